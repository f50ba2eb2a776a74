/* A fake Occlum PAL for the loader tests: it records every call, one line each, in LOG_PATH
 * (set with -DLOG_PATH=...) and behaves like Occlum's on a few inputs:
 *  - init fails with ENOENT for an instance_dir ending in "/missing";
 *  - create_process fails with EACCES outside the /bin entry point, else returns pid 7;
 *  - exec of pid 7 reports exit code 3 (wait(2) encoding), other pids fail with ESRCH;
 *  - kill accepts SIGKILL and SIGTERM only (EINVAL otherwise).
 * -DFAKE_VERSION=N changes the reported version; -DOMIT_DESTROY leaves out a symbol;
 * -DWITH_LAST_ERROR adds encc's encc_pal_last_error extension, which explains init's ENOENT. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "encc_pal.h"

#ifndef FAKE_VERSION
#define FAKE_VERSION 2
#endif

static void record(const char *fmt, const char *a, const char *b) {
    FILE *log = fopen(LOG_PATH, "a");
    if (log) {
        fprintf(log, fmt, a, b);
        fputc('\n', log);
        fclose(log);
    }
}

static void record_list(FILE *log, const char *name, const char **items) {
    fprintf(log, " %s=", name);
    for (size_t i = 0; items && items[i]; i++)
        fprintf(log, "%s%s", i ? "|" : "", items[i]);
}

int occlum_pal_get_version(void) { return FAKE_VERSION; }

#ifdef WITH_LAST_ERROR
static char last_error[256];

int encc_pal_last_error(char *buf, size_t len) {
    if (!buf) {
        errno = EINVAL;
        return -1;
    }
    size_t n = strlen(last_error);
    if (n == 0) {
        errno = ENOENT;
        return -1;
    }
    if (n >= len) {
        errno = ENOSPC;
        return -1;
    }
    memcpy(buf, last_error, n + 1);
    return (int)n;
}
#endif

int occlum_pal_init(const struct occlum_pal_attr *attr) {
    if (!attr || !attr->instance_dir) {
        errno = EINVAL;
        return -1;
    }
    record("init %s %s", attr->instance_dir, attr->log_level ? attr->log_level : "NULL");
    size_t len = strlen(attr->instance_dir);
    if (len >= 8 && strcmp(attr->instance_dir + len - 8, "/missing") == 0) {
#ifdef WITH_LAST_ERROR
        snprintf(last_error, sizeof last_error, "instance %s has no boot.json", attr->instance_dir);
#endif
        errno = ENOENT;
        return -1;
    }
    return 0;
}

int occlum_pal_create_process(struct occlum_pal_create_process_args *args) {
    if (!args || !args->path || !args->argv || !args->pid) {
        errno = EINVAL;
        return -1;
    }
    FILE *log = fopen(LOG_PATH, "a");
    if (log) {
        fprintf(log, "create %s", args->path);
        record_list(log, "argv", args->argv);
        record_list(log, "env", args->env);
        if (args->stdio)
            fprintf(log, " stdio=%d,%d,%d\n", args->stdio->stdin_fd, args->stdio->stdout_fd,
                    args->stdio->stderr_fd);
        else
            fprintf(log, " stdio=none\n");
        fclose(log);
    }
    if (strncmp(args->path, "/bin/", 5) != 0) {
        errno = EACCES;
        return -1;
    }
    *args->pid = 7;
    return 0;
}

int occlum_pal_exec(struct occlum_pal_exec_args *args) {
    if (!args || !args->exit_value) {
        errno = EINVAL;
        return -1;
    }
    char pid[16];
    snprintf(pid, sizeof pid, "%d", args->pid);
    record("exec %s%s", pid, "");
    if (args->pid != 7) {
        errno = ESRCH;
        return -1;
    }
    *args->exit_value = 3 << 8;
    return 0;
}

int occlum_pal_kill(int pid, int sig) {
    char p[16], s[16];
    snprintf(p, sizeof p, "%d", pid);
    snprintf(s, sizeof s, "%d", sig);
    record("kill %s %s", p, s);
    if (sig != SIGKILL && sig != SIGTERM) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

#ifndef OMIT_DESTROY
int occlum_pal_destroy(void) {
    record("destroy%s%s", "", "");
    return 0;
}
#endif
