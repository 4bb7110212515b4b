/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the catalog loader must never crash, leak or read out of bounds on any
 * input, and a catalog it accepts must satisfy the invariants catalog.h promises. */
#include "converge/catalog.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  cvg_catalog *cat = NULL;
  cvg_error err;
  if (cvg_catalog_parse(&cat, "fuzz.yaml", (const char *)data, size, &err) == CVG_OK) {
    if (!cat || cat->n_datasets == 0 || !cat->listen || !cat->warnings)
      abort();
    for (size_t i = 0; i < cat->n_datasets; i++) {
      const cvg_cat_dataset *d = &cat->datasets[i];
      if (d->n_replicas < 2 || d->shards < 1 || d->authority >= (int)d->n_replicas)
        abort();
      for (size_t r = 0; r < d->n_replicas; r++)
        if (!d->replicas[r].url || !d->replicas[r].url_display || !d->replicas[r].name)
          abort();
    }
    cvg_catalog_free(cat);
  } else if (cat || err.status == CVG_OK || !err.msg[0]) {
    abort();
  }
  return 0;
}
