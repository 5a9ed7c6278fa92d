/*
 * pairs_dump.c - print what query/pairs.c reads from PAIRS, for the tests
 * (tests/cli/84-pairs.t) to compare with the metadata they wrote:
 *
 *     pairs_dump [--labels] PAIRS
 *
 * prints "pair<TAB>PATH<TAB>TEXT" per pair, "skip<TAB>LINE" per skipped
 * item, then "nocaption<TAB>N"; exit 0, or 3 with "error<TAB>reason"
 * when PAIRS itself cannot be read.
 */
#include <stdio.h>
#include <string.h>

#include "pairs.h"

int main(int argc, char **argv)
{
    int mode = PAIRS_CAPTIONS, a = 1;
    char err[1024];
    pairs p = {0};
    if (a < argc && !strcmp(argv[a], "--labels")) mode = PAIRS_LABELS, a++;
    if (a + 1 != argc) {
        fprintf(stderr, "usage: pairs_dump [--labels] PAIRS\n");
        return 2;
    }
    int rc = pairs_read(&p, argv[a], mode, err, sizeof err);
    if (rc) printf("error\t%s\n", err);
    for (size_t i = 0; i < p.n; i++) printf("pair\t%s\t%s\n", p.v[i].path, p.v[i].text);
    for (size_t i = 0; i < p.skipped.n; i++) printf("skip\t%s\n", p.skipped.v[i]);
    printf("nocaption\t%zu\n", p.n_nocaption);
    pairs_release(&p);
    return rc ? 3 : 0;
}
