/*
 * encc_pal.h - the PAL ABI of libencc_pal.so.
 *
 * libencc_pal.so exports two symbol sets over one implementation:
 *
 *  - Occlum's PAL API (occlum_pal_api.h, OCCLUM_PAL_VERSION 2): the occlum_pal_* functions
 *    return 0 on success, or -1 with errno set.
 *  - rune's Enclave Runtime PAL API (inclavare-containers, v2 and v3): the pal_* functions
 *    return 0 on success, or a negative errno. pal_get_version returns ENCC_RUNE_PAL_VERSION,
 *    so rune passes a pal_attr_v3_t to pal_init.
 *
 * The Rust side of this header is host-launcher/src/ffi.rs; a test compiles this header with
 * -Wall -Wextra -Werror and compares every size and offset with it. x86_64 Linux only.
 *
 * Differences from the upstream headers (same ABI):
 *  - the stdio members are named stdin_fd/stdout_fd/stderr_fd in both sets (rune names them
 *    stdin/stdout/stderr, which collide with <stdio.h> macros on some C libraries);
 *  - rune's structs are declared with both a tag and a typedef, so `struct pal_stdio_fds`
 *    (the spec's spelling) and `pal_stdio_fds` (rune's skeleton) both work;
 *  - rune's spec shows pal_create_process_args and pal_exec_args as packed; rune itself
 *    builds them unpacked, and so are they here.
 */
#ifndef ENCC_PAL_H
#define ENCC_PAL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Occlum PAL API --------------------------------------------------------------------- */

#ifndef OCCLUM_PAL_VERSION
#define OCCLUM_PAL_VERSION 2
#endif

typedef struct occlum_pal_attr {
    /* The instance directory; for libencc_pal.so it holds boot.json. */
    const char *instance_dir;
    /* "off", "error", "warn", "info", "debug" or "trace"; NULL means "off". */
    const char *log_level;
} occlum_pal_attr_t;

typedef struct occlum_stdio_fds {
    int stdin_fd;
    int stdout_fd;
    int stderr_fd;
} occlum_stdio_fds_t;

struct occlum_pal_create_process_args {
    const char *path;                     /* mandatory: the program inside the enclave */
    const char **argv;                    /* mandatory: NULL-terminated, argv[0] included */
    const char **env;                     /* optional: NULL-terminated untrusted NAME=value */
    const struct occlum_stdio_fds *stdio; /* optional: NULL means the caller's own */
    int *pid;                             /* mandatory output */
};

struct occlum_pal_exec_args {
    int pid;         /* from occlum_pal_create_process */
    int *exit_value; /* mandatory output: wait(2) encoding */
};

int occlum_pal_get_version(void);
int occlum_pal_init(const struct occlum_pal_attr *attr);
int occlum_pal_create_process(struct occlum_pal_create_process_args *args);
int occlum_pal_exec(struct occlum_pal_exec_args *args);
/* pid -1: every process; sig: SIGKILL or SIGTERM. */
int occlum_pal_kill(int pid, int sig);
int occlum_pal_destroy(void);

/* encc's extension (not in Occlum's or rune's ABI): after init, copies the only program
 * create_process may start into buf (NUL-terminated); returns its length, or -1 with errno
 * (EINVAL before init, ENOSPC when len is too small). */
int encc_pal_entry_program(char *buf, size_t len);

/* encc's extension: copies the explanation of the last failed call (the enclave's message
 * behind the errno, e.g. a signature policy rejection) into buf (NUL-terminated); returns
 * its length, or -1 with errno (ENOENT when no call failed, ENOSPC when len is too small). */
int encc_pal_last_error(char *buf, size_t len);

/* ---- rune Enclave Runtime PAL API v2/v3 -------------------------------------------------- */

#define ENCC_RUNE_PAL_VERSION 3

typedef struct pal_attr_t {
    /* enclave.runtime.args: space-separated key=value items (boot_config=, image=, log_level=) */
    const char *args;
    /* enclave.runtime.loglevel */
    const char *log_level;
} pal_attr_v1_t;

typedef struct pal_attr_t pal_attr_t;

typedef struct pal_attr_v3 {
    pal_attr_v1_t attr_v1;
    int fd;        /* -1: the PAL creates its own enclave */
    uint64_t addr;
} pal_attr_v3_t;

typedef struct pal_stdio_fds {
    int stdin_fd;
    int stdout_fd;
    int stderr_fd;
} pal_stdio_fds;

typedef struct pal_create_process_args {
    char *path;
    char **argv;
    char **env;
    struct pal_stdio_fds *stdio;
    int *pid;
} pal_create_process_args;

typedef struct pal_exec_args {
    int pid;
    int *exit_value;
} pal_exec_args;

int pal_get_version(void);
int pal_init(const pal_attr_v3_t *attr);
int pal_create_process(pal_create_process_args *args);
int pal_exec(pal_exec_args *args);
int pal_kill(int pid, int sig);
int pal_destroy(void);
int pal_get_local_report(void *targetinfo, int targetinfo_len, void *report, int *report_len);

#ifdef __cplusplus
}
#endif

#endif /* ENCC_PAL_H */
