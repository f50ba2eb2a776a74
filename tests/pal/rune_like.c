/* Loads a PAL library the way rune (inclavare-containers) does and drives one container:
 * dlopen(RTLD_NOW), dlsym of the seven pal_* symbols, pal_get_version, pal_init with a v3
 * attr ("create"), pal_create_process + pal_exec ("start"), pal_kill ("kill"),
 * pal_destroy ("delete"). Written for encc's tests; prints one line per step.
 *
 * usage: rune_like LIBRARY BOOT_CONFIG IMAGE MODE
 *   MODE run        start the entry point with no args, print its status
 *   MODE kill       start "exec sleep 100", pal_kill SIGTERM, print its status
 *   MODE wrong-path ask create_process for a program other than the entry point
 *   MODE oci        start the entry point with the image's own full argv, as rune passes the
 *                   OCI process args (Entrypoint + Cmd of the busybox fixture)
 *   MODE oci-other  the same program with other arguments
 * enclave.runtime.args carries rune's own "no-epm" item too, as rune passes it on.
 */
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

typedef struct { const char *args; const char *log_level; } pal_attr_v1_t;
typedef struct { pal_attr_v1_t attr_v1; int fd; uint64_t addr; } pal_attr_v3_t;
struct pal_stdio_fds { int stdin_fd, stdout_fd, stderr_fd; };
struct pal_create_process_args { char *path; char **argv; char **env; struct pal_stdio_fds *stdio; int *pid; };
struct pal_exec_args { int pid; int *exit_value; };

static void *sym(void *lib, const char *name) {
    void *p = dlsym(lib, name);
    if (!p) { printf("dlsym %s: %s\n", name, dlerror()); _exit(2); }
    return p;
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: rune_like LIBRARY BOOT_CONFIG IMAGE MODE\n"); return 2; }
    const char *mode = argv[4];
    void *lib = dlopen(argv[1], RTLD_NOW);
    if (!lib) { printf("dlopen: %s\n", dlerror()); return 2; }
    int (*get_version)(void) = (int (*)(void))sym(lib, "pal_get_version");
    int (*init)(const pal_attr_v3_t *) = (int (*)(const pal_attr_v3_t *))sym(lib, "pal_init");
    int (*create_process)(struct pal_create_process_args *) =
        (int (*)(struct pal_create_process_args *))sym(lib, "pal_create_process");
    int (*exec)(struct pal_exec_args *) = (int (*)(struct pal_exec_args *))sym(lib, "pal_exec");
    int (*kill_)(int, int) = (int (*)(int, int))sym(lib, "pal_kill");
    int (*destroy)(void) = (int (*)(void))sym(lib, "pal_destroy");
    (void)sym(lib, "pal_get_local_report");

    int version = get_version();
    printf("version %d\n", version);
    if (version != 3) return 3;

    char args[4096];
    snprintf(args, sizeof args, "boot_config=%s image=%s no-epm", argv[2], argv[3]);
    pal_attr_v3_t attr = { { args, "warn" }, -1, 0 };
    int ret = init(&attr);
    printf("init %d\n", ret);
    if (ret != 0) return 4;

    char *path = "/bin/sh";
    char *run_argv[] = { "/bin/sh", NULL };
    char *kill_argv[] = { "/bin/sh", "exec sleep 100", NULL };
    char *wrong_argv[] = { "/bin/busybox", "echo", "escaped", NULL };
    char *oci_argv[] = { "/bin/sh", "-c", "echo hello from busybox", NULL };
    char *oci_other_argv[] = { "/bin/sh", "-c", "echo escaped", NULL };
    char **cargv = run_argv;
    if (strcmp(mode, "kill") == 0) cargv = kill_argv;
    if (strcmp(mode, "wrong-path") == 0) { path = "/bin/busybox"; cargv = wrong_argv; }
    if (strcmp(mode, "oci") == 0) cargv = oci_argv;
    if (strcmp(mode, "oci-other") == 0) cargv = oci_other_argv;
    char *env[] = { "FROM_RUNE=1", NULL };
    struct pal_stdio_fds fds = { 0, 1, 2 };
    int pid = -1;
    struct pal_create_process_args cp = { path, cargv, env, &fds, &pid };
    ret = create_process(&cp);
    printf("create_process %d\n", ret);
    fflush(stdout);
    if (ret == 0) {
        if (strcmp(mode, "kill") == 0) {
            usleep(300 * 1000);
            printf("kill %d\n", kill_(pid, SIGTERM));
        }
        int status = -1;
        struct pal_exec_args ea = { pid, &status };
        ret = exec(&ea);
        printf("exec %d\n", ret);
        if (WIFSIGNALED(status)) printf("signaled %d\n", WTERMSIG(status));
        else printf("exited %d\n", WEXITSTATUS(status));
    }
    printf("destroy %d\n", destroy());
    return 0;
}
