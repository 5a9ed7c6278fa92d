/*
 * spm.cc - the C interface of spm.h over libsentencepiece's C++ API.
 *
 * Nothing here throws into C: allocation failures inside the library are
 * caught and reported as CDX_ERR_NOMEM.
 */
#include <sentencepiece_processor.h>

#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

extern "C" {
#include "internal.h"
}
#include "spm.h"

struct cdx_spm {
    sentencepiece::SentencePieceProcessor sp;
};

/* The largest model file read (Gemma's is 4.2 MB). */
#define SPM_MAX_BYTES (64u << 20)

extern "C" cdx_status cdx_spm_load(const char *path, int no_dummy_prefix, cdx_spm **out)
{
    char *buf = NULL;
    size_t len = 0;
    cdx_status st = cdx_read_file(path, SPM_MAX_BYTES, &buf, &len);
    if (st) return st;
    cdx_spm *s = NULL;
    try {
        std::string proto(buf, len);
        if (no_dummy_prefix) {
            /* ModelProto field 3 (normalizer_spec, length-delimited) holding
             * NormalizerSpec field 3 (add_dummy_prefix, varint) = 0.  A
             * message field that occurs twice is merged by the protobuf
             * parser, the later scalar winning: this is MergeFrom. */
            static const char merge[] = {0x1a, 0x02, 0x18, 0x00};
            proto.append(merge, sizeof merge);
        }
        s = new cdx_spm;
        auto r = s->sp.LoadFromSerializedProto(proto);
        if (!r.ok()) {
            st = cdx_fail(CDX_ERR_MODEL, "%s: not a SentencePiece model (%s)", path,
                          r.error_message());
            delete s;
            s = NULL;
        }
    } catch (const std::bad_alloc &) {
        delete s;
        s = NULL;
        st = cdx_fail(CDX_ERR_NOMEM, "%s: out of memory", path);
    } catch (...) {
        delete s;
        s = NULL;
        st = cdx_fail(CDX_ERR_MODEL, "%s: not a SentencePiece model", path);
    }
    free(buf);
    if (!st) *out = s;
    return st;
}

extern "C" void cdx_spm_free(cdx_spm *s) { delete s; }

extern "C" cdx_status cdx_spm_encode(const cdx_spm *s, const char *text, size_t len, int skip,
                                     int32_t **ids, int *n)
{
    *ids = NULL;
    *n = 0;
    try {
        std::vector<std::string> pieces;
        auto r = s->sp.Encode(std::string_view(text, len), &pieces);
        if (!r.ok()) return cdx_fail(CDX_ERR_ARG, "sentencepiece: %s", r.error_message());
        size_t k = skip > 0 ? (size_t)skip : 0;
        size_t cnt = pieces.size() > k ? pieces.size() - k : 0;
        if (pieces.size() < k) {
            /* transformers keeps every piece when there are fewer than
             * skip of them ("... if len(tokens) >= unk_token_length"). */
            k = 0;
            cnt = pieces.size();
        }
        int32_t *v = (int32_t *)malloc((cnt ? cnt : 1) * sizeof *v);
        if (!v) return cdx_fail(CDX_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < cnt; i++) v[i] = s->sp.PieceToId(pieces[k + i]);
        *ids = v;
        *n = (int)cnt;
    } catch (const std::bad_alloc &) {
        return cdx_fail(CDX_ERR_NOMEM, "out of memory");
    }
    return CDX_OK;
}

extern "C" int cdx_spm_count(const cdx_spm *s, const char *text)
{
    try {
        std::vector<std::string> pieces;
        if (!s->sp.Encode(text, &pieces).ok()) return 0;
        return (int)pieces.size();
    } catch (...) {
        return 0;
    }
}

extern "C" int32_t cdx_spm_piece_id(const cdx_spm *s, const char *piece)
{
    int id = s->sp.PieceToId(piece);
    if (id == s->sp.unk_id() && s->sp.IdToPiece(id) != piece) return -1;
    return id;
}

extern "C" int cdx_spm_size(const cdx_spm *s) { return s->sp.GetPieceSize(); }
