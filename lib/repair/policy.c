/* SPDX-License-Identifier: MIT */
/*
 * Repair policies: which copy of a divergent key wins. Deterministic - the same copies always
 * give the same decision - and tombstone-aware: a tombstone beats a live row of the same or an
 * older version, so a delete is never undone by an older write.
 *
 *   lww        the copy with the highest version wins; between equal versions a tombstone wins,
 *              then the replica whose name sorts first (byte order); an absent row (no version)
 *              loses to any row - use a tombstone column to carry deletes
 *   authority  the authority's copy wins; if the authority has no row, the key is deleted on
 *              every other replica
 *   manual     the lww proposal, waiting for a person's approval
 */
#include "converge/json.h"
#include "converge/repair.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The version as text for rationales: 1017, "2026-11-26", or "none". */
static void version_text(const cvg_copy *c, char *out, size_t size) {
  if (c->state == CVG_ABSENT || !c->version_len) {
    snprintf(out, size, "%s", c->state == CVG_ABSENT ? "absent" : "none");
    return;
  }
  cvg_value v;
  size_t n = 0;
  cvg_buf scratch;
  cvg_buf_init(&scratch, 1u << 16);
  json_t *j = NULL;
  if (cvg_decode_tuple(c->version, c->version_len, &v, 1, &n, &scratch) == CVG_OK && n == 1) {
    if (v.type == CVG_INTEGER) { /* the common case, without a JSON round trip */
      snprintf(out, size, "%lld", (long long)v.u.i);
      cvg_buf_release(&scratch);
      return;
    }
    j = cvg_value_to_json(&v);
  }
  char *s = j ? json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
  snprintf(out, size, "%s", s ? s : "?");
  free(s);
  json_decref(j);
  cvg_buf_release(&scratch);
}

/* >0 when copy a wins over copy b under lww (names break exact ties). */
static int lww_beats(const cvg_copy *a, const char *an, const cvg_copy *b, const char *bn) {
  if ((a->state == CVG_ABSENT) != (b->state == CVG_ABSENT))
    return b->state == CVG_ABSENT;
  int v = cvg_key_compare(a->version, a->version_len, b->version, b->version_len);
  if (v)
    return v > 0;
  if ((a->state == CVG_TOMBSTONED) != (b->state == CVG_TOMBSTONED))
    return a->state == CVG_TOMBSTONED;
  return strcmp(an, bn) < 0;
}

static int lww(const cvg_copy *c, size_t n, const char *const *names, cvg_decision *d) {
  size_t best = 0;
  for (size_t i = 1; i < n; i++)
    if (lww_beats(&c[i], names[i], &c[best], names[best]))
      best = i;
  d->winner = (int)best;
  char bv[128], ov[128];
  version_text(&c[best], bv, sizeof bv);
  /* how it won: the runner-up tells */
  size_t second = best == 0 ? 1 : 0;
  for (size_t i = 0; i < n; i++)
    if (i != best && lww_beats(&c[i], names[i], &c[second], names[second]))
      second = i;
  version_text(&c[second], ov, sizeof ov);
  int same = c[second].state != CVG_ABSENT &&
             cvg_key_compare(c[best].version, c[best].version_len, c[second].version,
                             c[second].version_len) == 0;
  if (!same)
    snprintf(d->rationale, sizeof d->rationale,
             "lww: '%s' has the highest version (%s%s, next '%s' %s); its copy wins", names[best],
             bv, c[best].state == CVG_TOMBSTONED ? ", a tombstone" : "", names[second], ov);
  else if ((c[best].state == CVG_TOMBSTONED) != (c[second].state == CVG_TOMBSTONED))
    snprintf(d->rationale, sizeof d->rationale,
             "lww: versions tie at %s; the tombstone on '%s' wins over the live copy, so the "
             "delete is not undone",
             bv, names[best]);
  else if (!memcmp(&c[best].fp, &c[second].fp, sizeof c[best].fp))
    snprintf(d->rationale, sizeof d->rationale,
             "lww: '%s' and '%s' agree at the highest version (%s); their copy wins", names[best],
             names[second], bv);
  else
    snprintf(d->rationale, sizeof d->rationale,
             "lww: versions tie at %s with different contents; the tie is broken by replica name "
             "order: '%s' sorts before '%s'",
             bv, names[best], names[second]);
  return CVG_OK;
}

int cvg_decide(cvg_policy p, const cvg_copy *copies, size_t n, const char *const *names,
               int authority, cvg_decision *out, cvg_error *err) {
  memset(out, 0, sizeof *out);
  out->winner = -1;
  if (n < 2)
    return cvg_error_set(err, CVG_EINVAL, "repair", "a decision needs two copies or more");
  switch (p) {
  case CVG_POLICY_LWW:
  case CVG_POLICY_MERGE: /* the lww winner is the base the per-column rules start from */
  case CVG_POLICY_MANUAL:
    for (size_t i = 0; i < n; i++)
      if (copies[i].state != CVG_ABSENT && !copies[i].version_len)
        return cvg_error_set(err, CVG_EINVAL, names[i],
                             "lww needs a version on every row; '%s' has a row without one",
                             names[i]);
    lww(copies, n, names, out);
    if (p == CVG_POLICY_MANUAL) {
      static const char pre[] = "manual: awaiting approval of the proposal - ";
      size_t l = strlen(out->rationale), pl = sizeof pre - 1;
      if (l + pl >= sizeof out->rationale)
        l = sizeof out->rationale - pl - 1;
      memmove(out->rationale + pl, out->rationale, l);
      memcpy(out->rationale, pre, pl);
      out->rationale[pl + l] = '\0';
      out->manual = 1;
    }
    break;
  case CVG_POLICY_AUTHORITY:
    if (authority < 0 || (size_t)authority >= n)
      return cvg_error_set(err, CVG_EINVAL, "repair",
                           "policy authority needs an authority replica");
    out->winner = authority;
    if (copies[authority].state == CVG_ABSENT) {
      out->delete_all = 1;
      snprintf(out->rationale, sizeof out->rationale,
               "authority: '%s' (the source of truth) has no row for this key; it is deleted on "
               "the other replicas",
               names[authority]);
    } else {
      char v[128];
      version_text(&copies[authority], v, sizeof v);
      snprintf(out->rationale, sizeof out->rationale,
               "authority: '%s' (the source of truth) has version %s%s; its copy is re-attested "
               "on the other replicas",
               names[authority], v,
               copies[authority].state == CVG_TOMBSTONED ? " (a tombstone)" : "");
    }
    break;
  default:
    return cvg_error_set(err, CVG_EINVAL, "repair",
                         "the dataset has no repair policy; set policy: lww, authority or manual");
  }
  return CVG_OK;
}
