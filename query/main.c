/*
 * main.c - clipdex, the query tool: dispatch over the subcommand table.
 *
 * The dispatcher looks a subcommand up, runs its handler, then flushes
 * stdout and checks for write errors so that "clipdex ... > /full/disk"
 * fails loudly instead of exiting 0 with a truncated result.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"

const cdx_cmd cdx_commands[] = {
    {"embed", cmd_embed,
     "clipdex embed [--model DIR] [--preprocess exact|fast] [--format json|tsv] [--raw] "
     "[--precision auto|f32|bf16|int8] "
     "[--text STR]... [--image PATH]...",
     "print CLIP embeddings of texts and images"},
    {"tokenize", cmd_tokenize, "clipdex tokenize [--model DIR] TEXT...",
     "print the token ids the text tower sees (CLIP BPE, SigLIP SentencePiece)"},
    {"model", cmd_model, "clipdex model [--model DIR] [--precision auto|f32|bf16|int8]",
     "summarise a model directory: family, towers, tokenizer, scoring, preprocessing"},
    {"search", cmd_search,
     "clipdex search [--data DIR] [--model DIR] [--precision P] [-n N] [--min-score S] [--after DATE] "
     "[--before DATE] [--under DIR] [--camera TEXT] [--ext EXT]... [--text STR]... "
     "[--image PATH]... [--not STR]... [--not-image PATH]... [--weight W] "
     "[--format table|paths|json|html] [-0] [-o FILE] [QUERY]...",
     "find images by description, by example, or both"},
    {"similar", cmd_similar,
     "clipdex similar [--data DIR] [--model DIR] [--precision P] [-n N] [--min-score S] [--after DATE] "
     "[--before DATE] [--under DIR] [--camera TEXT] [--ext EXT]... "
     "[--format table|paths|json|html] [-0] [-o FILE] PATH",
     "find images that look like PATH"},
    {"dupes", cmd_dupes,
     "clipdex dupes [--data DIR] [--model DIR] [--precision P] [--method exact|visual|semantic[,...]] "
     "[--threshold T] [--after DATE] [--before DATE] [--under DIR] [--camera TEXT] "
     "[--ext EXT]... [--format table|paths|json|html] [-0] [-o FILE]",
     "find groups of duplicate images, best copy first"},
    {"moderate", cmd_moderate,
     "clipdex moderate [--data DIR] [--model DIR] [--precision P] [--preset NAME]... [--labels FILE]... "
     "[--threshold P] [--new] [--list-presets] [-n N] [--after DATE] [--before DATE] "
     "[--under DIR] [--camera TEXT] [--ext EXT]... [--format table|paths|json|html] [-0] "
     "[-o FILE]",
     "sweep the library for content that needs review"},
    {"stats", cmd_stats, "clipdex stats [--data DIR] [--format table|json]",
     "counts by format, year and camera; store size; models"},
    {"index", cmd_index, "clipdex index [--config FILE] [--model DIR] [--data DIR] [--precision P] DIR...",
     "index directories once (runs clipdexd --once)"},
    {"status", cmd_status, "clipdex status [--config FILE] [--data DIR] [--format text|json]",
     "what the index holds and what clipdexd is doing"},
    {"check", cmd_check, "clipdex check [--data DIR] [--repair]",
     "verify (and repair) the index store"},
    {"info", cmd_info, "clipdex info [--format table|json] [--probe] IMAGE...",
     "format, size, orientation, date, camera and GPS of image files"},
    {"serve", cmd_serve,
     "clipdex serve [--data DIR] [--model DIR] [--precision P] [--listen ADDR:PORT] [--token TOKEN] "
     "[--threads N] [--cache-mb MB]",
     "the library as a local web app (search, photos, dupes, moderation) and JSON API"},
    {"train", cmd_train,
     "clipdex train [--model DIR] --data PAIRS --out DIR [--lr LR] [--weight-decay WD] [--batch B] [--sub-batch N] "
     "[--steps N | --epochs E] [--warmup N] [--schedule cosine|constant] [--seed S] "
     "[--order file|shuffle] [--lock image|text] [--from-store] [--unlock-last N] [--augment none|crop] "
     "[--init pretrained|random] "
     "[--preprocess exact|fast] [--log FILE] [--save-every N] [--until STEP] [--resume]",
     "fine-tune a CLIP model on image-caption pairs (contrastive training)"},
    {"eval", cmd_eval,
     "clipdex eval [--model DIR] [--precision P] [--preprocess exact|fast] [--classes DIR|TSV] "
     "[--template T]... [--templates FILE] [--pairs PAIRS] [--format text|json]",
     "zero-shot classification accuracy and image-text retrieval recall on your data"},
    {"help", cmd_help, "clipdex help [COMMAND]", "show help for a command"},
    {NULL, NULL, NULL, NULL},
};

const cdx_cmd *cmd_find(const char *name)
{
    for (const cdx_cmd *c = cdx_commands; c->name; c++)
        if (strcmp(c->name, name) == 0) return c;
    return NULL;
}

static void main_usage(FILE *f)
{
    fprintf(f, "usage: clipdex COMMAND [ARGS]\n\ncommands:\n");
    for (const cdx_cmd *c = cdx_commands; c->name; c++)
        fprintf(f, "  %-10s %s\n", c->name, c->summary);
    fprintf(f, "\n'clipdex help COMMAND' or 'clipdex COMMAND -h' shows a command's usage.\n");
}

int cmd_help(int argc, char **argv)
{
    if (argc < 2) {
        main_usage(stdout);
        return EXIT_OK;
    }
    const cdx_cmd *c = cmd_find(argv[1]);
    if (!c) return usage_error(cmd_find("help"), "unknown command '%s'", argv[1]);
    cmd_usage(c, stdout);
    return EXIT_OK;
}

static void log_sink(int level, const char *msg, void *user)
{
    (void)user;
    fprintf(stderr, "clipdex: %s%s\n", level >= CDX_LOG_ERROR ? "error: " :
            level == CDX_LOG_WARN ? "warning: " : "", msg);
}

int main(int argc, char **argv)
{
    const cdx_cmd *c;
    int ret;

    if (argc < 2) {
        main_usage(stderr);
        return EXIT_USAGE;
    }
    if (is_help(argv[1])) {
        main_usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("clipdex %s\n", CDX_VERSION);
        return EXIT_OK;
    }
    c = cmd_find(argv[1]);
    if (!c) {
        fprintf(stderr, "clipdex: '%s' is not a clipdex command\n", argv[1]);
        main_usage(stderr);
        return EXIT_USAGE;
    }
    cdx_log_set(log_sink, NULL, getenv("CLIPDEX_DEBUG") ? CDX_LOG_DEBUG : CDX_LOG_WARN);
    /* Compute threads: all online CPUs unless CLIPDEX_THREADS says (the
     * results are the same on any count; tests check 1 against 2). */
    const char *th = getenv("CLIPDEX_THREADS");
    if (th && *th) {
        char *end;
        long n = strtol(th, &end, 10);
        if (*end || n < 1 || n > 256) {
            fprintf(stderr, "clipdex: CLIPDEX_THREADS must be 1..256, not '%s'\n", th);
            return EXIT_USAGE;
        }
        cdx_threads_set((int)n);
    }
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) break;
        if (is_help(argv[i])) {
            cmd_usage(c, stdout);
            return EXIT_OK;
        }
    }
    ret = c->run(argc - 1, argv + 1);

    /* Output errors (EPIPE, ENOSPC) must not pass silently. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        if (errno != EPIPE) fprintf(stderr, "clipdex: write error on stdout: %s\n", strerror(errno));
        return ret ? ret : EXIT_ERROR;
    }
    return ret;
}
