/*
 * test_store_schema.c - the store's schema versioning: the built-in steps
 * are numbered without gaps, a fresh store is at the latest version, an
 * old database migrates forward keeping its data, a failing migration
 * leaves the old version intact (one transaction), a database from a
 * newer clipdex is refused, and a reader does not migrate under a
 * running writer.
 */
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store_internal.h"
#include "tap.h"

static char tmpdir[256];

static char *sub(const char *name)
{
    static char buf[4][512];
    static int i;
    char *b = buf[i++ % 4];
    snprintf(b, 512, "%s/%s", tmpdir, name);
    return b;
}

/* A database at schema version v, made by running the first v steps the
 * way an older clipdex would have, plus some rows. */
static int make_old(const char *dir, int v)
{
    char path[600];
    sqlite3 *db = NULL;
    int rc;
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/clipdex.db", dir);
    rc = sqlite3_open(path, &db);
    for (int i = 0; i < v && rc == SQLITE_OK; i++) rc = sqlite3_exec(db, cdx_schema_steps[i].sql, NULL, NULL, NULL);
    if (rc == SQLITE_OK) {
        char sql[1024];
        snprintf(sql, sizeof sql,
                 "PRAGMA user_version = %d; PRAGMA journal_mode = WAL;"
                 "INSERT INTO meta VALUES ('store_uuid', '0123456789abcdef0123456789abcdef');"
                 "INSERT INTO models(key, name, dim, created_at) VALUES ('k1', 'old-model', 4, 0);"
                 "INSERT INTO vectors(model_id, hash, data, created_at) VALUES (1, x'aa', x'003c0000000000000000', 0);"
                 "INSERT INTO changes(model_id, op, vector_id) VALUES (1, 1, 1);"
                 "INSERT INTO files(path, hash, state, indexed_at, vector_id) VALUES (x'2f6f6c642e6a7067', x'aa', 0, 0, 1);",
                 v);
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    }
    if (rc != SQLITE_OK) diag("make_old: %s", sqlite3_errmsg(db));
    sqlite3_close(db);
    return rc == SQLITE_OK;
}

static int64_t q1(const char *dir, const char *sql)
{
    char path[600];
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    int64_t n = -1;
    snprintf(path, sizeof path, "%s/clipdex.db", dir);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
        n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return n;
}

int main(void)
{
    cdx_store *s = NULL;
    cdx_store_opts w = {.writer = 1};
    int latest = cdx_schema_steps[cdx_schema_n_steps - 1].version;
    int gaps = 0;

    snprintf(tmpdir, sizeof tmpdir, "/tmp/cdx-test-schema-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;

    for (int i = 0; i < cdx_schema_n_steps; i++)
        if (cdx_schema_steps[i].version != i + 1) gaps++;
    ok(cdx_schema_n_steps >= 2 && gaps == 0, "%d schema steps numbered 1..%d", cdx_schema_n_steps, latest);

    /* Fresh. */
    ok(cdx_store_open(sub("fresh"), &w, &s) == CDX_OK, "fresh store");
    cdx_store_close(s);
    ok(q1(sub("fresh"), "PRAGMA user_version") == latest, "fresh store is at version %d", latest);
    ok(q1(sub("fresh"), "SELECT count(*) FROM sqlite_master WHERE name = 'moderation'") == 1,
       "every step ran");
    ok(q1(sub("fresh"), "SELECT length(value) FROM meta WHERE key = 'store_uuid'") == 32,
       "fresh store got a uuid");
    {
        char p[600];
        sqlite3 *db;
        char *mode = NULL;
        sqlite3_stmt *q;
        snprintf(p, sizeof p, "%s/clipdex.db", sub("fresh"));
        sqlite3_open(p, &db);
        sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL);
        if (sqlite3_step(q) == SQLITE_ROW) mode = strdup((const char *)sqlite3_column_text(q, 0));
        sqlite3_finalize(q);
        sqlite3_close(db);
        ok(mode && strcmp(mode, "wal") == 0, "journal mode is WAL (%s)", mode ? mode : "?");
        free(mode);
    }

    /* Old -> new with data. */
    ok(make_old(sub("old"), 1), "a version-1 database with a file");
    ok(cdx_store_open(sub("old"), &w, &s) == CDX_OK, "writer opens it: %s", cdx_last_error());
    cdx_store_close(s);
    ok(q1(sub("old"), "PRAGMA user_version") == latest, "migrated to %d", latest);
    ok(q1(sub("old"), "SELECT count(*) FROM files WHERE path = CAST('/old.jpg' AS BLOB)") == 1 &&
           q1(sub("old"), "SELECT count(*) FROM vectors") == 1,
       "rows survived the migration");
    ok(q1(sub("old"), "SELECT count(*) FROM sqlite_master WHERE name IN ('moderation', 'files_ext')") == 2,
       "new tables and indexes exist");

    /* Reader migrates when no writer runs... */
    ok(make_old(sub("old-r"), 1), "another version-1 database");
    ok(cdx_store_open(sub("old-r"), NULL, &s) == CDX_OK, "a reader migrates it when no writer runs");
    cdx_store_close(s);
    ok(q1(sub("old-r"), "PRAGMA user_version") == latest, "at %d", latest);

    /* ...but not under a running (older) writer. */
    ok(make_old(sub("old-busy"), 1), "a third one, with its writer lock held");
    {
        char lp[600];
        snprintf(lp, sizeof lp, "%s/writer.lock", sub("old-busy"));
        int fd = open(lp, O_RDWR | O_CREAT, 0644);
        flock(fd, LOCK_EX);
        s = NULL;
        ok(cdx_store_open(sub("old-busy"), NULL, &s) == CDX_ERR_BUSY && strstr(cdx_last_error(), "restart"),
           "reader refuses to migrate under a writer: %s", cdx_last_error());
        close(fd);
    }
    ok(q1(sub("old-busy"), "PRAGMA user_version") == 1, "still at 1");

    /* A migration that fails rolls back entirely. */
    ok(make_old(sub("fail"), 1), "a version-1 database...");
    {
        char p[600];
        sqlite3 *db;
        snprintf(p, sizeof p, "%s/clipdex.db", sub("fail"));
        sqlite3_open(p, &db);
        /* files_ext is created by step 2 after its other statements:
         * creating it now makes step 2 fail half-way. */
        sqlite3_exec(db, "CREATE INDEX files_ext ON files(path)", NULL, NULL, NULL);
        sqlite3_close(db);
    }
    s = NULL;
    ok(cdx_store_open(sub("fail"), &w, &s) != CDX_OK && strstr(cdx_last_error(), "002_"),
       "...whose migration fails names the step: %s", cdx_last_error());
    ok(q1(sub("fail"), "PRAGMA user_version") == 1 &&
           q1(sub("fail"), "SELECT count(*) FROM sqlite_master WHERE name = 'moderation'") == 0,
       "nothing of the failed step stayed (version 1, no moderation table)");

    /* Newer than us. */
    ok(make_old(sub("new"), latest), "a current database...");
    {
        char p[600];
        sqlite3 *db;
        snprintf(p, sizeof p, "%s/clipdex.db", sub("new"));
        sqlite3_open(p, &db);
        sqlite3_exec(db, "PRAGMA user_version = 999", NULL, NULL, NULL);
        sqlite3_close(db);
    }
    s = NULL;
    ok(cdx_store_open(sub("new"), &w, &s) == CDX_ERR_UNSUPPORTED && strstr(cdx_last_error(), "newer") &&
           strstr(cdx_last_error(), "999"),
       "...claiming version 999 is refused: %s", cdx_last_error());
    ok(cdx_store_open(sub("new"), NULL, &s) == CDX_ERR_UNSUPPORTED, "by readers too");
    ok(q1(sub("new"), "PRAGMA user_version") == 999, "and left alone");

    /* Not a store at all. */
    {
        char p[600];
        mkdir(sub("junk"), 0755);
        snprintf(p, sizeof p, "%s/clipdex.db", sub("junk"));
        FILE *f = fopen(p, "w");
        fputs("this is not a database, just some text long enough to fill a header page..........", f);
        fclose(f);
        s = NULL;
        ok(cdx_store_open(sub("junk"), NULL, &s) != CDX_OK, "a non-database is refused: %s", cdx_last_error());
    }

    if (!tap_failed) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0) diag("could not remove %s", tmpdir);
    }
    return done_testing();
}
