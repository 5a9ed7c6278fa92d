/*
 * phash_files.c - print the perceptual hash of image files exactly as the
 * index gets it (cdx_image_decode with EXIF orientation applied, then
 * cdx_phash), for measuring the visual-duplicate threshold
 * (tests/tools/dupes_eval.py).
 *
 * usage: phash_files FILE...   prints "HASH16 <TAB> ORIENTATION <TAB> PATH"
 * per file ("-" and the error on stderr for a file that fails).
 */
#include <stdio.h>

#include "clipdex.h"

int main(int argc, char **argv)
{
    int bad = 0;
    for (int i = 1; i < argc; i++) {
        cdx_decode_opts o = {0};
        cdx_image img = {0};
        cdx_image_meta meta;
        uint64_t h;
        o.apply_orientation = 1;
        if (cdx_image_decode(argv[i], &o, &img, &meta) != CDX_OK || cdx_phash(&img, &h) != CDX_OK) {
            fprintf(stderr, "phash_files: %s\n", cdx_last_error());
            printf("-\t0\t%s\n", argv[i]);
            bad = 1;
        } else {
            printf("%016llx\t%d\t%s\n", (unsigned long long)h, meta.orientation, argv[i]);
        }
        cdx_image_release(&img);
    }
    return bad;
}
