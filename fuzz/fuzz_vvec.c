/* SPDX-License-Identifier: MIT */
/* libFuzzer target: version-vector comparison on arbitrary text (JSON parsing of outside input).
 * The order must be antisymmetric: compare(a,b) and compare(b,a) mirror each other. */
#include "converge/diff.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t half = size / 2;
  const char *a = (const char *)data, *b = (const char *)data + half;
  cvg_vv_order o1, o2;
  cvg_error err;
  int r1 = cvg_vv_compare(a, half, b, size - half, &o1, &err);
  int r2 = cvg_vv_compare(b, size - half, a, half, &o2, &err);
  if ((r1 == CVG_OK) != (r2 == CVG_OK))
    abort();
  if (r1 == CVG_OK) {
    int mirror = (o1 == CVG_VV_EQUAL && o2 == CVG_VV_EQUAL) ||
                 (o1 == CVG_VV_CONCURRENT && o2 == CVG_VV_CONCURRENT) ||
                 (o1 == CVG_VV_BEFORE && o2 == CVG_VV_AFTER) ||
                 (o1 == CVG_VV_AFTER && o2 == CVG_VV_BEFORE);
    if (!mirror)
      abort();
  }
  return 0;
}
