/*
 * log.c - the daemon's log sink (see log.h).
 *
 * Formatting happens into a fixed stack buffer (long messages are cut at
 * 2 KiB), so logging never allocates and works even when memory is short.
 * Thread-safe: the mutex orders whole lines and the bar's redraws.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"
#include "util.h"

_Atomic int log_min_level = CDX_LOG_INFO;

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static int log_fd = STDERR_FILENO;  /* where lines go */
static char *log_path;              /* NULL: stderr */
static int journal;                 /* stderr is the systemd journal */
static int bar_shown;
static int core_installed;

/* $JOURNAL_STREAM is "DEV:INO" of the stream systemd connected; it only
 * counts when stderr is still that stream (not redirected by a shell). */
static int stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat sb;
    if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2) return 0;
    if (fstat(STDERR_FILENO, &sb) != 0) return 0;
    return (unsigned long long)sb.st_dev == dev && (unsigned long long)sb.st_ino == ino;
}

static void core_sink(int level, const char *msg, void *user)
{
    (void)user;
    if (level >= log_min_level) log_emit(level, "%s", msg);
}

int log_open(const char *path, int min_level)
{
    int fd = STDERR_FILENO;
    if (path && *path) {
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) return -1;
    }
    pthread_mutex_lock(&log_mu);
    if (log_fd != STDERR_FILENO) close(log_fd);
    log_fd = fd;
    free(log_path);
    log_path = path && *path ? xstrdup(path) : NULL;
    journal = !log_path && stderr_is_journal();
    log_min_level = min_level;
    pthread_mutex_unlock(&log_mu);
    if (!core_installed) {
        cdx_log_set(core_sink, NULL, min_level);
        core_installed = 1;
    }
    return 0;
}

void log_reopen(void)
{
    pthread_mutex_lock(&log_mu);
    if (log_path) {
        int fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0) {
            close(log_fd);
            log_fd = fd;
        }
    }
    pthread_mutex_unlock(&log_mu);
}

void log_close(void)
{
    /* Called when no other thread runs any more. */
    cdx_log_set(NULL, NULL, CDX_LOG_ERROR);
    core_installed = 0;
    pthread_mutex_lock(&log_mu);
    if (log_fd != STDERR_FILENO) close(log_fd);
    log_fd = STDERR_FILENO;
    free(log_path);
    log_path = NULL;
    pthread_mutex_unlock(&log_mu);
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return; /* a log that cannot be written is dropped */
        p += w;
        n -= (size_t)w;
    }
}

void log_emit(int level, const char *fmt, ...)
{
    char buf[2304];
    size_t len = 0;
    int saved = errno;
    va_list ap;

    if (level < 0) level = 0;
    if (level > CDX_LOG_ERROR) level = CDX_LOG_ERROR;
    pthread_mutex_lock(&log_mu);
    if (bar_shown && log_fd == STDERR_FILENO) {
        memcpy(buf, "\r\033[K", 4);
        len = 4;
    }
    if (journal) {
        /* sd-daemon priorities: 3 err, 4 warning, 6 info, 7 debug */
        static const char pri[] = {'7', '6', '4', '3'};
        buf[len++] = '<';
        buf[len++] = pri[level];
        buf[len++] = '>';
    } else {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        localtime_r(&ts.tv_sec, &tm);
        len += strftime(buf + len, 32, "%Y-%m-%d %H:%M:%S", &tm);
        len += (size_t)snprintf(buf + len, sizeof buf - len, ".%03ld clipdexd[%ld] %s: ",
                                ts.tv_nsec / 1000000, (long)getpid(), log_level_name(level));
    }
    va_start(ap, fmt);
    int n = vsnprintf(buf + len, sizeof buf - len - 1, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    len += (size_t)n < sizeof buf - len - 1 ? (size_t)n : sizeof buf - len - 2;
    /* One line: a newline inside a message (a file name) becomes a space. */
    for (size_t i = 0; i < len; i++)
        if (buf[i] == '\n') buf[i] = ' ';
    buf[len++] = '\n';
    write_all(log_fd, buf, len);
    pthread_mutex_unlock(&log_mu);
    errno = saved;
}

void log_bar_shown(int shown)
{
    pthread_mutex_lock(&log_mu);
    bar_shown = shown;
    pthread_mutex_unlock(&log_mu);
}

void log_raw_stderr(const char *text, size_t n)
{
    pthread_mutex_lock(&log_mu);
    write_all(STDERR_FILENO, text, n);
    pthread_mutex_unlock(&log_mu);
}

int log_to_tty(void)
{
    return log_fd == STDERR_FILENO && isatty(STDERR_FILENO);
}

/* ---- phase marks (a test hook) ---- */

static int phase_fd = -1;
static pthread_once_t phase_once = PTHREAD_ONCE_INIT;

static void phase_init(void)
{
    const char *v = getenv("CLIPDEX_TEST_PHASE_FD");
    char *end;
    long fd;
    if (!v || !*v) return;
    fd = strtol(v, &end, 10);
    if (*end == '\0' && fd > 2 && fd < 1024 && fcntl((int)fd, F_GETFD) >= 0) phase_fd = (int)fd;
}

void log_phase(const char *phase, int begin)
{
    struct timespec ts;
    char line[96];
    int n;
    pthread_once(&phase_once, phase_init);
    if (phase_fd < 0) return;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    n = snprintf(line, sizeof line, "%.3f %s %s\n", (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6, phase,
                 begin ? "begin" : "end");
    /* One write per line: lines from worker threads stay whole. */
    if (n > 0 && n < (int)sizeof line) (void)!write(phase_fd, line, (size_t)n);
}
