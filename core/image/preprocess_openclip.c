/* placeholder, replaced below */
#include "image_impl.h"
cdx_status cdx_preprocess_openclip(const cdx_preprocess_cfg *cfg, const cdx_image *img, float *out)
{
    (void)cfg; (void)img; (void)out;
    return cdx_fail(CDX_ERR_UNSUPPORTED, "todo");
}
