/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the chaos lab's scenario parser must never crash, leak or read out of
 * bounds on any input, and a scenario it accepts must satisfy what the lab relies on. */
#include "converge/chaos.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static cvg_chaos_scenario sc;
  cvg_error err;
  if (cvg_chaos_parse("fuzz.yaml", (const char *)data, size, &sc, &err) == CVG_OK) {
    if (sc.replicas < 2 || sc.replicas > CVG_CHAOS_MAX_REPLICAS ||
        sc.n_faults > CVG_CHAOS_MAX_FAULTS || sc.duration < 1 || sc.rate < 1 ||
        sc.mix_update + sc.mix_insert + sc.mix_delete != 100)
      abort();
    for (size_t i = 0; i < sc.n_faults; i++) {
      const cvg_chaos_fault *f = &sc.faults[i];
      if (f->kind >= CVG_FAULT__COUNT || f->replica < 1 || f->replica >= sc.replicas || f->at < 0 ||
          f->at + f->duration > sc.duration)
        abort();
    }
  } else if (err.status == CVG_OK || !err.msg[0]) {
    abort();
  }
  return 0;
}
