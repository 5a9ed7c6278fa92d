/*
 * train_stale.c - removing the temporary directories of interrupted saves
 * (cdx_train_remove_stale).
 *
 * cdx_train_save builds OUT.tmp-PID beside OUT and renames it into place;
 * a SIGKILL (or power cut) before the rename, or after the swap but
 * before the old model is deleted, leaves OUT.tmp-PID behind, a full
 * model's worth of bytes.  The next run with the same OUT removes such a
 * directory when it is certainly abandoned:
 *   - its name is exactly OUT's name + ".tmp-" + a decimal PID, beside OUT;
 *   - it is a real directory (not a symlink) owned by us, holding only
 *     regular files (what cdx_train_save writes; anything else stays);
 *   - the PID is not ours, and either no process has it, or the process
 *     that has it started after the directory was last changed (the PID
 *     was reused: that process cannot be the one writing it).
 * A save in progress in another live run is never touched: its process
 * exists and is older than the directory it is writing.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "train.h"

/* The start time of process pid in seconds since the epoch, or -1 when
 * it cannot be read.  /proc/PID/stat field 22 is the start in clock ticks
 * since boot; /proc/stat's btime is the boot in epoch seconds. */
static double proc_start(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    /* the command name (field 2) may hold spaces and parentheses: count
     * fields after its last ')' */
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    unsigned long long ticks = 0;
    int field = 2;
    for (char *s = p + 1; *s && field < 22; s++)
        if (*s == ' ') {
            field++;
            if (field == 22) ticks = strtoull(s + 1, NULL, 10);
        }
    if (field != 22) return -1;
    long hz = sysconf(_SC_CLK_TCK);
    f = fopen("/proc/stat", "r");
    if (!f || hz <= 0) {
        if (f) fclose(f);
        return -1;
    }
    long long btime = -1;
    char line[256];
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "btime %lld", &btime) == 1) break;
    fclose(f);
    return btime < 0 ? -1 : (double)btime + (double)ticks / (double)hz;
}

/* 1 when dir holds regular files only (and so is what a save writes). */
static int only_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    struct stat sb;
    int ok = d != NULL;
    while (ok && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char *p = cdx_path_join(dir, de->d_name);
        ok = p && lstat(p, &sb) == 0 && S_ISREG(sb.st_mode);
        free(p);
    }
    if (d) closedir(d);
    return ok;
}

static int remove_files_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    if (!d) return -1;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char *p = cdx_path_join(dir, de->d_name);
        if (p) unlink(p);
        free(p);
    }
    closedir(d);
    return rmdir(dir);
}

cdx_status cdx_train_remove_stale(const char *out_dir, int *removed)
{
    char *parent = NULL, *base = NULL, *path = NULL;
    DIR *d = NULL;
    struct dirent *de;
    cdx_status st = CDX_OK;
    int count = 0;

    if (removed) *removed = 0;
    if (!out_dir || !*out_dir) return cdx_fail(CDX_ERR_ARG, "cdx_train_remove_stale: invalid argument");
    if (!(parent = strdup(out_dir))) goto nomem;
    size_t n = strlen(parent);
    while (n > 1 && parent[n - 1] == '/') parent[--n] = 0;
    char *slash = strrchr(parent, '/');
    if (!slash) {
        base = parent;
        if (!(parent = strdup("."))) goto nomem;
    } else {
        if (!(base = strdup(slash + 1))) goto nomem;
        if (slash == parent) slash[1] = 0;
        else *slash = 0;
    }
    const size_t bl = strlen(base);
    if (!bl || !strcmp(base, ".") || !strcmp(base, "..")) goto out;
    if (!(d = opendir(parent))) goto out; /* no parent: nothing stale either */
    while ((de = readdir(d))) {
        const char *nm = de->d_name, *num;
        char *end;
        if (strncmp(nm, base, bl) != 0 || strncmp(nm + bl, ".tmp-", 5) != 0) continue;
        num = nm + bl + 5;
        if (*num < '1' || *num > '9') continue;
        errno = 0;
        long pid = strtol(num, &end, 10);
        if (*end || errno || pid <= 0 || pid == (long)getpid()) continue;
        free(path);
        if (!(path = cdx_path_join(parent, nm))) goto nomem;
        struct stat sb;
        if (lstat(path, &sb) != 0 || !S_ISDIR(sb.st_mode) || sb.st_uid != geteuid()) continue;
        int alive = kill((pid_t)pid, 0) == 0 || errno == EPERM;
        if (alive) {
            double started = proc_start(pid);
            /* a process as old as the directory's last change may be
             * writing it: keep it (one second of slack for the clocks) */
            if (started < 0 || started <= (double)sb.st_mtime + 1.0) continue;
        }
        if (!only_files(path)) continue;
        if (remove_files_dir(path) == 0) {
            count++;
            CDX_DEBUG("%s: removed the temporary directory of an interrupted save", path);
        }
    }
    goto out;
nomem:
    st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", out_dir);
out:
    if (d) closedir(d);
    free(parent);
    free(base);
    free(path);
    if (removed) *removed = count;
    return st;
}

/* The test hook (tests/cli/82-train-kill.t): CLIPDEX_TEST_SAVE_STOP=
 * WHERE:N stops the process (SIGSTOP) at point WHERE of its N-th save, so
 * a test can SIGKILL it there deterministically, without timing.  WHERE
 * is "before" (the new directory complete, not yet renamed) or "swapped"
 * (the new model in place, the old one not yet removed). */
void cdx_train_test_stop(const char *where)
{
    static int saves;
    const char *e = getenv("CLIPDEX_TEST_SAVE_STOP");
    if (!strcmp(where, "start")) saves++;
    if (!e) return;
    const char *colon = strchr(e, ':');
    size_t wl = colon ? (size_t)(colon - e) : strlen(e);
    int nth = colon ? (int)strtol(colon + 1, NULL, 10) : 1;
    if (strlen(where) == wl && !strncmp(e, where, wl) && nth == saves) raise(SIGSTOP);
}
