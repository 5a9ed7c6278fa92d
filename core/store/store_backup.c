/*
 * store_backup.c - a copy of the database kept so that damage to it does
 * not cost a full re-embedding.
 *
 * The database is the truth (vectors included); the FAISS files are
 * derived.  A damaged clipdex.db (a bad disk sector, a copy made while it
 * was written) used to leave one way out: delete the store and embed every
 * photo again.  So the writer keeps DIR/clipdex.db.backup, made with
 * SQLite's online backup API (a consistent snapshot, taken while readers
 * go on), and `clipdex check --repair` puts it back in place of a damaged
 * database; what changed on disk since the backup is then reconciled (the
 * caller) and the next index run embeds only that.
 *
 * A backup is checked (PRAGMA quick_check) before it replaces the previous
 * one, so a database that is already damaged never overwrites the last
 * good copy; it is written under a temporary name, synced and renamed, so
 * a crash leaves the previous backup whole.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clipdex.h"
#include "store_internal.h"

#define DB_NAME "clipdex.db"
#define BACKUP_NAME "clipdex.db.backup"
#define DAMAGED_NAME "clipdex.db.damaged"

/* PRAGMA quick_check on the database file at path, opened read-only on
 * its own: 1 when it answers "ok", 0 when damaged (why says how). */
static int db_ok(const char *path, char *why, size_t cap)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    int rc, good = 0;

    snprintf(why, cap, "unreadable");
    rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_prepare_v2(db, "PRAGMA quick_check(1)", -1, &q, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *r = (const char *)sqlite3_column_text(q, 0);
        good = r && strcmp(r, "ok") == 0;
        snprintf(why, cap, "%s", r ? r : "no answer");
        for (char *c = why; *c; c++)
            if (*c == '\n') *c = ' '; /* one line */
    } else {
        snprintf(why, cap, "%s", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    }
    sqlite3_finalize(q);
    sqlite3_close(db);
    return good;
}

static cdx_status fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    cdx_status st = CDX_OK;
    if (fd < 0 || fsync(fd) != 0) st = cdx_fail(CDX_ERR_IO, "%s: fsync: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    return st;
}

cdx_status cdx_store_backup(cdx_store *s)
{
    char *dst = NULL, *tmp = NULL, why[256];
    sqlite3 *out = NULL;
    sqlite3_backup *b = NULL;
    cdx_status st = CDX_OK;
    int rc;

    if (!s || !s->writer) return cdx_fail(CDX_ERR_ARG, "cdx_store_backup: not the writer");
    if (s->txn) return cdx_fail(CDX_ERR_ARG, "cdx_store_backup: a transaction is open");
    dst = cdx_path_join(s->dir, BACKUP_NAME);
    tmp = cdx_path_join(s->dir, BACKUP_NAME ".tmp");
    if (!dst || !tmp) {
        st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    unlink(tmp);
    rc = sqlite3_open_v2(tmp, &out, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                         NULL);
    if (rc == SQLITE_OK && !(b = sqlite3_backup_init(out, "main", s->db, "main")))
        rc = sqlite3_errcode(out);
    if (rc == SQLITE_OK) {
        /* all pages in one step: a consistent snapshot of the last commit */
        rc = sqlite3_backup_step(b, -1);
        if (rc == SQLITE_DONE) rc = SQLITE_OK;
        int rc2 = sqlite3_backup_finish(b);
        if (rc == SQLITE_OK) rc = rc2;
    }
    /* a plain rollback-journal file: nothing beside it (-wal, -shm) to
     * copy or lose, and a read-only open creates nothing */
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(out, "PRAGMA journal_mode = DELETE", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        st = cdx_fail(rc == SQLITE_FULL ? CDX_ERR_IO : CDX_ERR_STORE, "%s: backup: %s", tmp,
                      out ? sqlite3_errmsg(out) : sqlite3_errstr(rc));
        goto cleanup;
    }
    sqlite3_close(out);
    out = NULL;
    if (!db_ok(tmp, why, sizeof why)) {
        st = cdx_fail(CDX_ERR_FORMAT,
                      "%s: the database fails its check (%s): the previous backup is kept; "
                      "'clipdex check --repair' restores it", s->db_path, why);
        goto cleanup;
    }
    if ((st = fsync_path(tmp)) != CDX_OK) goto cleanup;
    if (rename(tmp, dst) != 0) {
        st = cdx_fail(CDX_ERR_IO, "%s: %s", dst, strerror(errno));
        goto cleanup;
    }
    st = fsync_path(s->dir);
cleanup:
    sqlite3_close(out);
    if (tmp && st != CDX_OK) unlink(tmp);
    free(dst);
    free(tmp);
    return st;
}

cdx_status cdx_store_damaged(const char *dir, int *damaged, char *why, size_t cap)
{
    char *db = cdx_path_join(dir, DB_NAME);
    struct stat sb;
    if (!db) return cdx_fail(CDX_ERR_NOMEM, "out of memory");
    *damaged = 0;
    snprintf(why, cap, "ok");
    if (stat(db, &sb) == 0) *damaged = !db_ok(db, why, cap);
    free(db);
    return CDX_OK;
}

/* Copy src to dst (a new file), synced. */
static cdx_status copy_file(const char *src, const char *dst)
{
    char buf[1 << 16];
    int in = open(src, O_RDONLY | O_CLOEXEC), out = -1;
    cdx_status st = CDX_OK;
    ssize_t n;
    if (in < 0) return cdx_fail(CDX_ERR_IO, "%s: %s", src, strerror(errno));
    out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        st = cdx_fail(CDX_ERR_IO, "%s: %s", dst, strerror(errno));
        goto cleanup;
    }
    while ((n = read(in, buf, sizeof buf)) > 0) {
        if (write(out, buf, (size_t)n) != n) {
            st = cdx_fail(CDX_ERR_IO, "%s: %s", dst, strerror(errno));
            goto cleanup;
        }
    }
    if (n < 0) st = cdx_fail(CDX_ERR_IO, "%s: %s", src, strerror(errno));
    else if (fsync(out) != 0) st = cdx_fail(CDX_ERR_IO, "%s: fsync: %s", dst, strerror(errno));
cleanup:
    close(in);
    if (out >= 0) close(out);
    return st;
}

/* Rename DIR/from to DIR/to when from exists. */
static cdx_status move_aside(const char *dir, const char *from, const char *to)
{
    char *a = cdx_path_join(dir, from), *b = cdx_path_join(dir, to);
    cdx_status st = CDX_OK;
    if (!a || !b) st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
    else if (rename(a, b) != 0 && errno != ENOENT)
        st = cdx_fail(CDX_ERR_IO, "%s: %s", a, strerror(errno));
    free(a);
    free(b);
    return st;
}

cdx_status cdx_store_restore_backup(const char *dir, int64_t *backup_time)
{
    cdx_store lk;
    char *backup = NULL, *db = NULL, *tmp = NULL, why[256];
    struct stat sb;
    cdx_status st;
    DIR *dh = NULL;
    struct dirent *e;

    memset(&lk, 0, sizeof lk);
    lk.lock_fd = -1;
    lk.lock_path = cdx_path_join(dir, "writer.lock");
    backup = cdx_path_join(dir, BACKUP_NAME);
    db = cdx_path_join(dir, DB_NAME);
    tmp = cdx_path_join(dir, DB_NAME ".restoring");
    if (!lk.lock_path || !backup || !db || !tmp) {
        st = cdx_fail(CDX_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    /* the same lock every writer takes: nobody writes while we swap */
    if ((st = cdx_store_lock(&lk)) != CDX_OK) goto cleanup;
    if (stat(backup, &sb) != 0) {
        st = cdx_fail(CDX_ERR_IO, "%s: no backup of the database to restore (%s); the store must be "
                      "rebuilt: delete %s and index again", backup, strerror(errno), dir);
        goto cleanup;
    }
    if (!db_ok(backup, why, sizeof why)) {
        st = cdx_fail(CDX_ERR_FORMAT, "%s: the backup is damaged too (%s)", backup, why);
        goto cleanup;
    }
    if (backup_time) *backup_time = (int64_t)sb.st_mtime;
    if ((st = copy_file(backup, tmp)) != CDX_OK) goto cleanup;
    /* Keep the damaged database (and its log) for whoever wants to look;
     * its WAL belongs to it and must not be applied to the backup. */
    if ((st = move_aside(dir, DB_NAME, DAMAGED_NAME)) != CDX_OK ||
        (st = move_aside(dir, DB_NAME "-wal", DAMAGED_NAME "-wal")) != CDX_OK)
        goto cleanup;
    {
        char *shm = cdx_path_join(dir, DB_NAME "-shm");
        if (shm) unlink(shm);
        free(shm);
    }
    if (rename(tmp, db) != 0) {
        st = cdx_fail(CDX_ERR_IO, "%s: %s", db, strerror(errno));
        goto cleanup;
    }
    /* The FAISS files follow the damaged database's change log, ahead of
     * the backup's: they are derived, so they go and are rebuilt at the
     * next open. */
    if ((dh = opendir(dir)) != NULL) {
        while ((e = readdir(dh)) != NULL) {
            size_t n = strlen(e->d_name);
            if (strncmp(e->d_name, "index-", 6) == 0 && n > 6 && strcmp(e->d_name + n - 6, ".faiss") == 0) {
                char *f = cdx_path_join(dir, e->d_name);
                if (f) unlink(f);
                free(f);
            }
        }
        closedir(dh);
    }
    st = fsync_path(dir);
cleanup:
    cdx_store_unlock(&lk);
    if (tmp) unlink(tmp);
    free(lk.lock_path);
    free(backup);
    free(db);
    free(tmp);
    return st;
}
