/* SPDX-License-Identifier: MIT */
/* libFuzzer target: decoding arbitrary bytes as an encoded tuple. Whatever decodes must encode
 * back to exactly the same bytes (the encoding is canonical), and the key's JSON form must build. */
#include "converge/encode.h"
#include "converge/json.h"
#include "converge/status.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  cvg_value vals[64];
  size_t n = 0;
  cvg_buf scratch, again;
  cvg_buf_init(&scratch, 1 << 20);
  cvg_buf_init(&again, 1 << 21);
  if (cvg_decode_tuple(data, size, vals, 64, &n, &scratch) == CVG_OK) {
    for (size_t i = 0; i < n; i++)
      if (cvg_encode_value(&again, &vals[i]) != CVG_OK)
        abort();
    /* Non-canonical inputs (a REAL -0.0 or a NaN other than the canonical one) re-encode
     * differently; everything else must round-trip byte for byte. */
    int has_real = 0;
    for (size_t i = 0; i < n; i++)
      has_real |= vals[i].type == CVG_REAL;
    if (!has_real && (again.len != size || (size && memcmp(again.data, data, size) != 0)))
      abort();
    static const char *const names[64] = {"a", "b", "c", "d", "e", "f", "g", "h"};
    if (n > 0 && n <= 8) {
      json_t *j = cvg_key_to_json(data, size, names, n);
      json_decref(j);
    }
  }
  cvg_buf_release(&scratch);
  cvg_buf_release(&again);
  return 0;
}
