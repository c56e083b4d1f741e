/* SPDX-License-Identifier: MIT */
/* Process handling for testserver.h. */
#include "testserver.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *build_dir(void)
{
    const char *b = getenv("PARLEY_BUILD_DIR");
    return b ? b : "build";
}

/* test.conf's path. */
static void base_conf(char *out, size_t size)
{
    const char *src = getenv("PARLEY_SOURCE_DIR");
    snprintf(out, size, "%s/tests/harness/test.conf", src ? src : ".");
}

int testserver_start_conf(struct testserver *s, const char *conf_extra)
{
    char base[512], path[300];
    base_conf(base, sizeof(base));
    const char *tmp = getenv("TMPDIR");
    snprintf(path, sizeof(path), "%s/parley-itest-conf.XXXXXX", tmp ? tmp : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) {
        perror("mkstemp");
        return -1;
    }
    FILE *out = fdopen(fd, "w");
    FILE *in = fopen(base, "r");
    if (!out || !in) {
        perror("test.conf");
        if (out)
            fclose(out);
        else
            close(fd);
        if (in)
            fclose(in);
        unlink(path);
        return -1;
    }
    char line[512];
    while (fgets(line, sizeof(line), in))
        fputs(line, out);
    fclose(in);
    fprintf(out, "\n%s\n", conf_extra);
    if (fclose(out) != 0) {
        unlink(path);
        return -1;
    }
    const char *args[] = {"--config", path, NULL};
    int rc = testserver_start(s, args);
    snprintf(s->conf_path, sizeof(s->conf_path), "%s", path);
    if (rc != 0) {
        unlink(path);
        s->conf_path[0] = '\0';
    }
    return rc;
}

int testserver_finish(struct testserver *s)
{
    int rc = testserver_stop(s, SIGTERM);
    bool dirty = testserver_sanitizer_report(s);
    testserver_cleanup(s);
    return rc == 0 && !dirty ? 0 : -1;
}

int testserver_start(struct testserver *s, const char *const *extra_args)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->dir, sizeof(s->dir), "/tmp/parley-itest.XXXXXX");
    if (!mkdtemp(s->dir)) {
        perror("mkdtemp");
        return -1;
    }
    snprintf(s->err_path, sizeof(s->err_path), "%s/parleyd.err", s->dir);
    char data[300], bin[512];
    snprintf(data, sizeof(data), "%s/data", s->dir);
    snprintf(bin, sizeof(bin), "%s/parleyd", build_dir());
    char conf[512];
    base_conf(conf, sizeof(conf));
    const char *argv[32] = {bin,    "--plaintext", "--listen", "127.0.0.1:0",
                            "--data", data,          "--config", conf};
    int argc = 8;
    for (int i = 0; extra_args && extra_args[i] && argc < 30; i++)
        argv[argc++] = extra_args[i];
    argv[argc] = NULL;

    int out[2];
    if (pipe(out) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int err = open(s->err_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(out[1], STDOUT_FILENO);
        if (err >= 0)
            dup2(err, STDERR_FILENO);
        close(out[0]);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    s->pid = pid;
    char line[256];
    size_t n = 0;
    struct pollfd p = {.fd = out[0], .events = POLLIN};
    while (n < sizeof(line) - 1) {
        if (poll(&p, 1, 30000) <= 0)
            break;
        ssize_t r = read(out[0], line + n, 1);
        if (r <= 0)
            break;
        if (line[n] == '\n')
            break;
        n++;
    }
    line[n] = '\0';
    close(out[0]);
    const char *prefix = "parleyd: listening on 127.0.0.1:";
    if (strncmp(line, prefix, strlen(prefix)) != 0) {
        fprintf(stderr, "parleyd did not get ready (got '%s')\n", line);
        testserver_stop(s, SIGKILL);
        return -1;
    }
    s->port = (unsigned)strtoul(line + strlen(prefix), NULL, 10);
    snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%u", s->port);
    return 0;
}

int testserver_stop(struct testserver *s, int sig)
{
    int status = 0;
    if (s->pid <= 0)
        return -1;
    kill(s->pid, sig);
    while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR)
        ;
    s->pid = 0;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

bool testserver_sanitizer_report(const struct testserver *s)
{
    FILE *f = fopen(s->err_path, "r");
    if (!f)
        return false;
    char line[1024];
    bool found = false;
    while (fgets(line, sizeof(line), f)) {
        if (strstr(line, "Sanitizer") || strstr(line, "runtime error:"))
            found = true;
        if (found)
            fputs(line, stderr);
    }
    fclose(f);
    return found;
}

void testserver_cleanup(struct testserver *s)
{
    char cmd[400];
    if (s->dir[0] && strncmp(s->dir, "/tmp/parley-itest.", 18) == 0) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", s->dir);
    }
    if (s->conf_path[0]) {
        unlink(s->conf_path);
        s->conf_path[0] = '\0';
    }
}

bool testserver_file_holds(const char *path, const void *needle, size_t n)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return false;
    size_t cap = 1 << 20, len = 0, got;
    char *buf = malloc(cap);
    if (!buf)
        abort();
    while ((got = fread(buf + len, 1, cap - len, fp)) > 0) {
        len += got;
        if (len == cap) {
            cap *= 2;
            if (!(buf = realloc(buf, cap)))
                abort();
        }
    }
    fclose(fp);
    bool found = false;
    for (size_t i = 0; !found && n <= len && i <= len - n; i++)
        found = memcmp(buf + i, needle, n) == 0;
    free(buf);
    return found;
}

bool testserver_store_holds(const struct testserver *s, const void *needle, size_t n)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/data/parley.db", s->dir);
    if (testserver_file_holds(path, needle, n))
        return true;
    snprintf(path, sizeof(path), "%s/data/parley.db-wal", s->dir);
    return testserver_file_holds(path, needle, n);
}
