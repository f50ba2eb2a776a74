/* Prints the layout of every struct in encc_pal.h, one "name value" line each;
 * it also checks at compile time that every declared function has the expected type. */
#include <stddef.h>
#include <stdio.h>

#include "encc_pal.h"

#define SIZE(t) printf("size %s %zu\nalign %s %zu\n", #t, sizeof(t), #t, _Alignof(t))
#define OFF(t, m) printf("offset %s.%s %zu\n", #t, #m, offsetof(t, m))

/* Every exported function has the type launchers cast its symbol to. _Generic does not
 * evaluate its operand, so nothing here needs the library at link time. */
#define HAS_TYPE(f, t) _Static_assert(_Generic(&(f), t: 1, default: 0), #f " has the wrong type")
HAS_TYPE(occlum_pal_get_version, int (*)(void));
HAS_TYPE(occlum_pal_init, int (*)(const struct occlum_pal_attr *));
HAS_TYPE(occlum_pal_create_process, int (*)(struct occlum_pal_create_process_args *));
HAS_TYPE(occlum_pal_exec, int (*)(struct occlum_pal_exec_args *));
HAS_TYPE(occlum_pal_kill, int (*)(int, int));
HAS_TYPE(occlum_pal_destroy, int (*)(void));
HAS_TYPE(pal_get_version, int (*)(void));
HAS_TYPE(pal_init, int (*)(const pal_attr_v3_t *));
HAS_TYPE(pal_create_process, int (*)(struct pal_create_process_args *));
HAS_TYPE(pal_exec, int (*)(struct pal_exec_args *));
HAS_TYPE(pal_kill, int (*)(int, int));
HAS_TYPE(pal_destroy, int (*)(void));
HAS_TYPE(pal_get_local_report, int (*)(void *, int, void *, int *));
HAS_TYPE(encc_pal_entry_program, int (*)(char *, size_t));
HAS_TYPE(encc_pal_last_error, int (*)(char *, size_t));

int main(void) {
    SIZE(occlum_pal_attr_t);
    OFF(occlum_pal_attr_t, instance_dir);
    OFF(occlum_pal_attr_t, log_level);
    SIZE(occlum_stdio_fds_t);
    OFF(occlum_stdio_fds_t, stdin_fd);
    OFF(occlum_stdio_fds_t, stdout_fd);
    OFF(occlum_stdio_fds_t, stderr_fd);
    SIZE(struct occlum_pal_create_process_args);
    OFF(struct occlum_pal_create_process_args, path);
    OFF(struct occlum_pal_create_process_args, argv);
    OFF(struct occlum_pal_create_process_args, env);
    OFF(struct occlum_pal_create_process_args, stdio);
    OFF(struct occlum_pal_create_process_args, pid);
    SIZE(struct occlum_pal_exec_args);
    OFF(struct occlum_pal_exec_args, pid);
    OFF(struct occlum_pal_exec_args, exit_value);

    SIZE(pal_attr_t);
    OFF(pal_attr_t, args);
    OFF(pal_attr_t, log_level);
    SIZE(pal_attr_v3_t);
    OFF(pal_attr_v3_t, attr_v1);
    OFF(pal_attr_v3_t, fd);
    OFF(pal_attr_v3_t, addr);
    SIZE(pal_stdio_fds);
    OFF(pal_stdio_fds, stdin_fd);
    OFF(pal_stdio_fds, stdout_fd);
    OFF(pal_stdio_fds, stderr_fd);
    SIZE(pal_create_process_args);
    OFF(pal_create_process_args, path);
    OFF(pal_create_process_args, argv);
    OFF(pal_create_process_args, env);
    OFF(pal_create_process_args, stdio);
    OFF(pal_create_process_args, pid);
    SIZE(pal_exec_args);
    OFF(pal_exec_args, pid);
    OFF(pal_exec_args, exit_value);

    printf("const OCCLUM_PAL_VERSION %d\n", OCCLUM_PAL_VERSION);
    printf("const ENCC_RUNE_PAL_VERSION %d\n", ENCC_RUNE_PAL_VERSION);
    printf("const ENCC_PAL_LAST_ERROR_MAX %d\n", ENCC_PAL_LAST_ERROR_MAX);
    return 0;
}
