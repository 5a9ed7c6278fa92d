/*
 * main.c - clipdexd, the indexing daemon (indexer/).
 *
 * Not built yet: the daemon is its own issue (scan, watch, embed, store).
 * Until then this binary only answers --version and says so plainly.
 */
#include <stdio.h>
#include <string.h>

#include "clipdex.h"

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("clipdexd %s\n", CDX_VERSION);
        return 0;
    }
    fprintf(stderr, "clipdexd: the indexing daemon is not implemented yet\n");
    return 3;
}
