/*
 * powercut.c - an LD_PRELOAD library that computes what a disk could hold
 * if the power failed at any moment of a process's life
 * (tests/cli/40-store-powercut.t runs clipdexd under it).
 *
 * The model: a file's data is durable up to its last fsync/fdatasync; a
 * directory's entries (creates, renames, unlinks) are durable up to the
 * directory's last fsync; sync/syncfs make everything durable.  Anything
 * else may be lost.  Each cut state is one of two outcomes, chosen at
 * random: "drop", the adversarial one, where everything not made durable
 * is gone (a file whose name is durable but whose data never was reads
 * back empty, as ext4's delayed allocation can leave it); or "mix", where
 * each change since the last sync may or may not have reached the disk:
 * names one by one, data 4 KiB page by page, the size either (dirs named
 * cut-NNNNNm).  A power cut can happen between any two system calls;
 * under this model the durable part only changes at a sync, so cuts just
 * before each sync k (k = 1, 2, ...), taken with the live files at that
 * moment for the mix outcome, and "after the process exited" (always
 * drop) cover what a cut can leave.  The process is not
 * stopped: the state a cut at sync k would leave is written out and the
 * process goes on, so one run yields all its cut points.
 *
 * Only one directory is watched (the store's data directory; flat).  At
 * start-up its contents count as durable (the test syncs before).  At
 * each fsync/fdatasync of a file in it, the file's current contents are
 * copied aside as that inode's durable image; at each fsync of the
 * directory, its listing (name -> inode) becomes the durable listing.
 *
 * What the program believed committed: when $CLIPDEX_TEST_PHASE_FD names
 * the daemon's phase-mark descriptor (indexer/log.h), every "commit end"
 * line written to it copies the live database files aside: that is the
 * state whose commit had returned.  Each cut state carries the copy made
 * at the last commit that returned before the cut.
 *
 * Output, in $CDX_POWERCUT_OUT:
 *   cut-NNNNN/            the data directory as the disk would hold it
 *   cut-NNNNN.committed/  the live database at the last returned commit
 *                         (absent when no commit had returned yet)
 *   cut-final/ ...        the same after the process exited
 *   syncs                 one line per sync event (for the test's report)
 * $CDX_POWERCUT_KEEP (default 20) cut states are kept, chosen uniformly
 * among all (reservoir sampling, seeded by $CDX_POWERCUT_SEED), plus the
 * final one.  Without $CDX_POWERCUT_DIR the library does nothing.
 *
 * A test tool, not part of clipdex: it aborts on its own I/O errors.
 */

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_NAMES 256

typedef struct {
    char name[NAME_MAX + 1];
    dev_t dev;
    ino_t ino;
} entry;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int active;
static char dir[PATH_MAX], out[PATH_MAX];
static dev_t dir_dev;
static ino_t dir_ino;
static entry durable[MAX_NAMES]; /* the durable listing */
static int n_durable;
static int phase_fd = -1;
static int n_commits;            /* commits returned so far */
static long n_syncs;             /* sync events seen */
static int keep = 20;
static long *slots;              /* cut index held by each reservoir slot, 0: none */
static unsigned long long rng;
static pid_t owner;              /* the process that loaded us (not its children) */

static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_syncfs)(int);
static void (*real_sync)(void);
static ssize_t (*real_write)(int, const void *, size_t);

static void die(const char *what, const char *path)
{
    char buf[PATH_MAX + 128];
    int n = snprintf(buf, sizeof buf, "powercut: %s %s: %s\n", what, path, strerror(errno));
    if (n > 0) (void)!syscall(SYS_write, 2, buf, (size_t)n);
    abort();
}

static unsigned long long next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Our own file I/O goes through raw system calls: write() is interposed. */
static void put_all(int fd, const char *p, size_t n, const char *path)
{
    while (n) {
        ssize_t w = syscall(SYS_write, fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) die("write", path);
        p += w;
        n -= (size_t)w;
    }
}

/* Copy the contents of fd (read from offset 0; the descriptor's offset is
 * untouched) or of path into to. */
static void copy_fd(int from, const char *to)
{
    char buf[1 << 16];
    off_t off = 0;
    int t = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (t < 0) die("create", to);
    for (;;) {
        ssize_t r = pread(from, buf, sizeof buf, off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) die("read for", to);
        if (r == 0) break;
        put_all(t, buf, (size_t)r, to);
        off += r;
    }
    close(t);
}

static void copy_path(const char *from, const char *to)
{
    int f = open(from, O_RDONLY | O_CLOEXEC);
    if (f < 0) {
        if (errno == ENOENT) return; /* -wal not created yet */
        die("open", from);
    }
    copy_fd(f, to);
    close(f);
}

static void image_path(char *buf, size_t n, dev_t dev, ino_t ino)
{
    snprintf(buf, n, "%s/.images/%llx-%llx", out, (unsigned long long)dev, (unsigned long long)ino);
}

static void rm_rf(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;
    char p[PATH_MAX];
    if (!d) return;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(path);
}

/* The directory's current listing, regular files only. */
static int list_dir(entry *v)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d) die("opendir", dir);
    while ((e = readdir(d))) {
        struct stat sb;
        if (fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode)) continue;
        if (n == MAX_NAMES) break;
        snprintf(v[n].name, sizeof v[n].name, "%s", e->d_name);
        v[n].dev = sb.st_dev;
        v[n].ino = sb.st_ino;
        n++;
    }
    closedir(d);
    return n;
}

/* Read all of path (NULL or missing: empty); *n its size. */
static char *slurp(const char *path, size_t *n)
{
    char *buf = NULL;
    size_t cap = 0;
    int fd;
    *n = 0;
    if (!path || (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) return NULL;
    for (;;) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 1 << 16;
            if (!(buf = realloc(buf, cap))) die("realloc", path);
        }
        ssize_t r = read(fd, buf + *n, cap - *n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) die("read", path);
        if (r == 0) break;
        *n += (size_t)r;
    }
    close(fd);
    return buf;
}

/* Write dst as the disk may hold the file: its durable image, and with
 * live (mix mode) each 4 KiB page either durable or live, and the size
 * either: the page cache writes pages back in any order, so any subset of
 * the writes since the last sync may have reached the disk, page by page
 * (bytes no write touched are the same in both versions). */
static void write_file(const char *dst, const char *image, const char *live)
{
    size_t nd, nl, n;
    char *d = slurp(image, &nd), *l = slurp(live, &nl);
    int fd = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) die("create", dst);
    n = live && (next_rand() & 1) ? nl : nd;
    for (size_t at = 0; at < n; at += 4096) {
        size_t len = n - at < 4096 ? n - at : 4096;
        int use_live = live && (next_rand() & 1);
        const char *src = use_live ? l : d;
        size_t have = use_live ? nl : nd;
        if (at + len > have) { /* this version is shorter: the other one */
            src = use_live ? d : l;
            have = use_live ? nd : nl;
        }
        if (!src || at + len > have) {
            static const char zeros[4096];
            put_all(fd, zeros, len, dst); /* allocated, never written */
        } else {
            put_all(fd, src + at, len, dst);
        }
    }
    close(fd);
    free(d);
    free(l);
}

/* Write out the disk's state as of now into out/NAME, and the copy of the
 * last returned commit into out/NAME.committed.  Drop mode: everything not
 * made durable is lost.  Mix mode: each change not made durable may or may
 * not have reached the disk (names one by one, data page by page). */
static void materialize(const char *name, int mix)
{
    char cut[PATH_MAX], p[PATH_MAX], img[PATH_MAX], lp[PATH_MAX];
    entry live[MAX_NAMES];
    int n_live = mix ? list_dir(live) : 0;
    snprintf(cut, sizeof cut, "%s/%s", out, name);
    if (mkdir(cut, 0755) != 0) die("mkdir", cut);
    for (int i = 0; i < n_durable; i++) {
        const entry *e = &durable[i];
        int j = 0, use_live = 0;
        while (j < n_live && strcmp(live[j].name, e->name) != 0) j++;
        if (mix && j == n_live && (next_rand() & 1)) continue; /* its unlink reached the disk */
        if (j < n_live) {
            /* Same inode: its unsynced writes may be there.  Another
             * inode (renamed over): the rename may be there. */
            use_live = live[j].dev == e->dev && live[j].ino == e->ino ? 1 : (int)(next_rand() & 1);
            if (use_live) e = &live[j];
        }
        snprintf(p, sizeof p, "%s/%s", cut, e->name);
        snprintf(lp, sizeof lp, "%s/%s", dir, e->name);
        image_path(img, sizeof img, e->dev, e->ino);
        write_file(p, img, use_live ? lp : NULL);
    }
    for (int j = 0; j < n_live; j++) { /* created since the last directory sync */
        int i = 0;
        while (i < n_durable && strcmp(durable[i].name, live[j].name) != 0) i++;
        if (i < n_durable || (next_rand() & 1)) continue;
        snprintf(p, sizeof p, "%s/%s", cut, live[j].name);
        snprintf(lp, sizeof lp, "%s/%s", dir, live[j].name);
        image_path(img, sizeof img, live[j].dev, live[j].ino);
        write_file(p, img, lp);
    }
    if (n_commits) {
        char c[PATH_MAX], from[PATH_MAX];
        snprintf(c, sizeof c, "%s.committed", cut);
        if (mkdir(c, 0755) != 0) die("mkdir", c);
        for (int k = 0; k < 2; k++) {
            const char *f = k ? "clipdex.db-wal" : "clipdex.db";
            snprintf(from, sizeof from, "%s/.commit/%s", out, f);
            snprintf(p, sizeof p, "%s/%s", c, f);
            copy_path(from, p);
        }
    }
}

static void drop_cut(long k)
{
    char p[PATH_MAX];
    for (int m = 0; m < 2; m++) {
        snprintf(p, sizeof p, "%s/cut-%05ld%s", out, k, m ? "m" : "");
        rm_rf(p);
        snprintf(p, sizeof p, "%s/cut-%05ld%s.committed", out, k, m ? "m" : "");
        rm_rf(p);
    }
}

/* Sync event number n_syncs is about to happen: maybe keep the state a
 * cut right now would leave. */
static void cut_point(const char *what)
{
    char name[32], line[PATH_MAX + 64], p[PATH_MAX];
    long k = ++n_syncs;
    long slot = -1;
    int fd;
    if (k <= keep) {
        slot = k - 1;
    } else {
        long j = (long)(next_rand() % (unsigned long long)k);
        if (j < keep) slot = j;
    }
    if (slot >= 0) {
        if (slots[slot]) drop_cut(slots[slot]);
        slots[slot] = k;
        /* Half the cuts lose everything not durable, half a random part. */
        int mix = (int)(next_rand() & 1);
        snprintf(name, sizeof name, "cut-%05ld%s", k, mix ? "m" : "");
        materialize(name, mix);
    }
    snprintf(p, sizeof p, "%s/syncs", out);
    fd = open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) die("open", p);
    int n = snprintf(line, sizeof line, "%ld %d %s\n", k, n_commits, what);
    put_all(fd, line, (size_t)n, p);
    close(fd);
}

/* What fd is, when it is in the watched directory: 1 the directory,
 * 2 a file in it (name in name), 0 anything else. */
static int classify(int fd, struct stat *sb, char *name, size_t n)
{
    char link[64], target[PATH_MAX];
    ssize_t r;
    size_t dl = strlen(dir);
    if (fstat(fd, sb) != 0) return 0;
    if (S_ISDIR(sb->st_mode)) return sb->st_dev == dir_dev && sb->st_ino == dir_ino;
    if (!S_ISREG(sb->st_mode)) return 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    r = readlink(link, target, sizeof target - 1);
    if (r <= 0) return 0;
    target[r] = '\0';
    if (strncmp(target, dir, dl) != 0 || target[dl] != '/' || strchr(target + dl + 1, '/')) return 0;
    snprintf(name, n, "%s", target + dl + 1);
    return 2;
}

static void on_sync(int fd)
{
    struct stat sb;
    char name[PATH_MAX], img[PATH_MAX], what[PATH_MAX + 16];
    int kind = classify(fd, &sb, name, sizeof name);
    if (!kind) return;
    snprintf(what, sizeof what, "%s", kind == 1 ? "dir" : name);
    cut_point(what);
    if (kind == 1) {
        n_durable = list_dir(durable);
    } else {
        /* Reopened for reading: the program's descriptor may be write-only. */
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        image_path(img, sizeof img, sb.st_dev, sb.st_ino);
        copy_path(link, img);
    }
}

static void all_durable(void)
{
    char img[PATH_MAX], p[PATH_MAX];
    cut_point("sync");
    n_durable = list_dir(durable);
    for (int i = 0; i < n_durable; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, durable[i].name);
        image_path(img, sizeof img, durable[i].dev, durable[i].ino);
        copy_path(p, img);
    }
}

__attribute__((constructor)) static void init(void)
{
    const char *d = getenv("CDX_POWERCUT_DIR"), *o = getenv("CDX_POWERCUT_OUT");
    const char *k = getenv("CDX_POWERCUT_KEEP"), *s = getenv("CDX_POWERCUT_SEED");
    const char *pf = getenv("CLIPDEX_TEST_PHASE_FD");
    struct stat sb;
    char p[PATH_MAX];
    real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    real_syncfs = (int (*)(int))dlsym(RTLD_NEXT, "syncfs");
    real_sync = (void (*)(void))dlsym(RTLD_NEXT, "sync");
    real_write = (ssize_t(*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    if (!d || !o) return;
    if (!realpath(d, dir)) die("realpath", d);
    if (!realpath(o, out)) die("realpath", o);
    if (stat(dir, &sb) != 0) die("stat", dir);
    dir_dev = sb.st_dev;
    dir_ino = sb.st_ino;
    if (k) keep = atoi(k) > 0 ? atoi(k) : 1;
    rng = 0x9e3779b97f4a7c15ull ^ (s ? strtoull(s, NULL, 10) : 1);
    slots = calloc((size_t)keep, sizeof *slots);
    if (!slots) die("calloc", "slots");
    if (pf) phase_fd = atoi(pf);
    snprintf(p, sizeof p, "%s/.images", out);
    if (mkdir(p, 0755) != 0 && errno != EEXIST) die("mkdir", p);
    snprintf(p, sizeof p, "%s/.commit", out);
    if (mkdir(p, 0755) != 0 && errno != EEXIST) die("mkdir", p);
    owner = getpid();
    active = 1;
    pthread_mutex_lock(&mu);
    n_syncs = -1; /* the start-up state is not a cut of this run */
    all_durable();
    pthread_mutex_unlock(&mu);
}

__attribute__((destructor)) static void fini(void)
{
    if (!active || getpid() != owner) return;
    pthread_mutex_lock(&mu);
    materialize("cut-final", 0); /* the adversarial outcome */
    active = 0;
    pthread_mutex_unlock(&mu);
}

int fsync(int fd)
{
    int r;
    if (!active || getpid() != owner) return real_fsync(fd);
    pthread_mutex_lock(&mu);
    r = real_fsync(fd);
    if (r == 0) on_sync(fd);
    pthread_mutex_unlock(&mu);
    return r;
}

int fdatasync(int fd)
{
    int r;
    if (!active || getpid() != owner) return real_fdatasync(fd);
    pthread_mutex_lock(&mu);
    r = real_fdatasync(fd);
    if (r == 0) on_sync(fd);
    pthread_mutex_unlock(&mu);
    return r;
}

int syncfs(int fd)
{
    int r;
    if (!active || getpid() != owner) return real_syncfs(fd);
    pthread_mutex_lock(&mu);
    r = real_syncfs(fd);
    all_durable();
    pthread_mutex_unlock(&mu);
    return r;
}

void sync(void)
{
    if (!active || getpid() != owner) {
        real_sync();
        return;
    }
    pthread_mutex_lock(&mu);
    real_sync();
    all_durable();
    pthread_mutex_unlock(&mu);
}

/* The daemon's phase marks: after "commit end" the commit has returned. */
ssize_t write(int fd, const void *buf, size_t n)
{
    ssize_t r = real_write(fd, buf, n);
    if (active && fd == phase_fd && r > 0 && memmem(buf, (size_t)r, " commit end", 11) &&
        getpid() == owner) {
        char from[PATH_MAX], to[PATH_MAX];
        pthread_mutex_lock(&mu);
        for (int k = 0; k < 2; k++) {
            const char *f = k ? "clipdex.db-wal" : "clipdex.db";
            snprintf(from, sizeof from, "%s/%s", dir, f);
            snprintf(to, sizeof to, "%s/.commit/%s", out, f);
            unlink(to); /* no -wal now: none in the copy either */
            copy_path(from, to);
        }
        n_commits++;
        pthread_mutex_unlock(&mu);
    }
    return r;
}
