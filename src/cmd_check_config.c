/* SPDX-License-Identifier: MIT */
/*
 * converge check-config FILE: loads a catalog, and either explains the first error (with
 * file:line:column) or explains what `converge watch` would do with it. Passwords never appear:
 * only url_display is printed.
 */
#include "cli.h"
#include "converge/alert.h"
#include "converge/catalog.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static void print_interval(const char *what, double s) {
  if (s <= 0)
    printf("    %-16s off\n", what);
  else
    printf("    %-16s every %gs\n", what, s);
}

static void explain_rule(const cvg_cat_rule *r) {
  char cond[256];
  switch (r->kind) {
  case CVG_RULE_METRIC:
    if (r->adaptive)
      snprintf(cond, sizeof cond,
               "%s above its seasonal baseline by %g robust deviations (floor "
               "%g, warm-up %gs%s%s)",
               r->subject, r->k, r->floor, r->warmup, r->intensity ? ", scaled by " : "",
               r->intensity ? r->intensity : "");
    else if (r->has_resolve)
      snprintf(cond, sizeof cond, "%s %s %g, resolves %s %g", r->subject,
               r->below ? "below" : "above", r->threshold, r->below ? "above" : "below",
               r->resolve);
    else
      snprintf(cond, sizeof cond, "%s %s %g", r->subject, r->below ? "below" : "above",
               r->threshold);
    break;
  case CVG_RULE_INVARIANT:
    snprintf(cond, sizeof cond, "invariant %s breached", r->subject);
    break;
  case CVG_RULE_TREND:
    snprintf(cond, sizeof cond, "lag trend at least %s", cvg_trend_names[r->at_least + 1]);
    break;
  case CVG_RULE_SLO:
    snprintf(cond, sizeof cond, "convergence SLO burn rate over %gs above %g", r->window,
             r->threshold);
    break;
  }
  printf("    %-30s %-5s %-8s %s", r->alert, cvg_stage_names[r->stage], r->severity, cond);
  if (r->for_s > 0)
    printf(", for %gs", r->for_s);
  if (r->keep_firing_for > 0)
    printf(", keeps firing %gs", r->keep_firing_for);
  printf("%s\n", r->builtin ? " (built-in)" : "");
}

static void explain_alerting(const cvg_catalog *cat, const cvg_alerts *rules) {
  const cvg_cat_alerting *a = &cat->alerting;
  printf("\nalerting: evaluated every %gs, re-sent every %gs, resolved alerts kept %gs\n",
         a->evaluation_interval, a->resend_interval, a->resolved_retention);
  if (!a->n_alertmanagers && !a->n_webhooks && !a->log_file)
    printf("  delivery: none (alerts show in /api/v1/alerts, /metrics and converge alerts)\n");
  for (size_t i = 0; i < a->n_alertmanagers; i++)
    printf("  alertmanager %s/api/v2/alerts\n", a->alertmanagers[i]);
  for (size_t i = 0; i < a->n_webhooks; i++)
    printf("  webhook      %s\n", a->webhooks[i]);
  if (a->log_file)
    printf("  log          %s (JSON lines)\n", a->log_file);
  printf("  state        %s\n", a->state_file);
  printf("  links        %s\n", a->external_url);
  printf("  POST /api/v1/events: %s\n",
         cat->api_token ? "needs the bearer token" : "off (no api token)");
  for (size_t i = 0; rules && i < cat->n_datasets; i++) {
    size_t n = 0;
    const cvg_cat_rule *const *r = cvg_alerts_rules(rules, i, &n);
    printf("  rules of %s:%s\n", cat->datasets[i].name, n ? "" : " none");
    for (size_t k = 0; k < n; k++)
      explain_rule(r[k]);
  }
}

static void explain(const cvg_catalog *cat) {
  printf("%s: OK — %zu dataset(s); HTTP on %s; %d probe worker(s); logs %s at level %s\n",
         cat->path, cat->n_datasets, cat->listen, cat->workers, cat->log_format, cat->log_level);
  for (size_t i = 0; i < cat->n_datasets; i++) {
    const cvg_cat_dataset *d = &cat->datasets[i];
    printf("\ndataset %s (line %d)%s%s\n", d->name, d->line, d->owner[0] ? ", owner " : "",
           d->owner);
    printf("  key: ");
    if (d->n_key == 0)
      printf("the table's primary key");
    for (size_t k = 0; k < d->n_key; k++)
      printf("%s%s", k ? ", " : "", d->key[k]);
    printf("\n  compared: ");
    if (d->n_columns == 0)
      printf("every non-key column");
    for (size_t k = 0; k < d->n_columns; k++)
      printf("%s%s", k ? ", " : "", d->columns[k]);
    for (size_t k = 0; k < d->n_exclude; k++)
      printf("%s%s", k ? ", " : " except ", d->exclude[k]);
    printf("\n  version: %s; tombstone: %s; origin: %s; shards: %u; payload samples: %s\n",
           d->version ? d->version : "(none)", d->tombstone ? d->tombstone : "(none)",
           d->origin ? d->origin : "(none)", d->shards, d->payload_samples ? "allowed" : "no");
    printf("  impact: tier %s", cvg_cat_tiers[d->impact.tier & 3]);
    if (d->impact.per_row > 0)
      printf("; a divergent row is worth %g%s%s", d->impact.per_row, d->impact.unit[0] ? " " : "",
             d->impact.unit);
    printf("%s%s\n", d->impact.note[0] ? "; " : "", d->impact.note);
    printf("  replicas:\n");
    for (size_t r = 0; r < d->n_replicas; r++) {
      const cvg_cat_replica *rp = &d->replicas[r];
      printf("    %-12s %s%s%s%s\n", rp->name, rp->url_display,
             rp->authority ? "  (authority)" : "", rp->region[0] ? "  region " : "", rp->region);
    }
    const cvg_cat_probes *p = &d->probes;
    printf("  probes:\n");
    int hb = d->authority >= 0 ? 1 : 0;
    print_interval("heartbeat", hb ? p->heartbeat_interval : 0);
    if (hb && p->heartbeat_interval > 0)
      printf("    %-16s table %s, stalled after %d reads without progress\n", "",
             p->heartbeat_table, p->stall_after);
    print_interval("canary", hb ? p->canary_interval : 0);
    if (hb && p->canary_interval > 0)
      printf("    %-16s table %s, timeout %gs\n", "", p->canary_table, p->canary_timeout);
    print_interval("incremental", d->version ? p->sweep_interval : 0);
    if (d->version && p->sweep_interval > 0)
      printf("    %-16s at most %zu divergent keys tracked%s\n", "", p->max_tracked,
             p->keep_mapped ? "; replica files kept mapped between checks" : "");
    print_interval("full sweep", p->full_sweep_interval);
    if (p->full_sweep_interval > 0) {
      if (p->full_sweep_rate > 0)
        printf("    %-16s at most %g rows/s per replica\n", "", p->full_sweep_rate);
      if (p->window_start >= 0)
        printf("    %-16s only between %02d:%02d and %02d:%02d UTC\n", "", p->window_start / 60,
               p->window_start % 60, p->window_end / 60, p->window_end % 60);
    }
    if (d->authority >= 0 && p->heartbeat_interval > 0) {
      printf("    %-16s a divergence is confirmed once a replica holding a differing copy has\n"
             "    %-16s applied a heartbeat written %gs after the key's newest write was first\n"
             "    %-16s seen (its apply position), or has applied nothing for %gs; a slow replica\n"
             "    %-16s never gets one, and a repair waits while a copy is still on its way\n",
             "confirm", "", p->heartbeat_interval, "", p->confirm_within, "");
      int pg = 0;
      for (size_t r = 0; r < d->n_replicas; r++)
        pg |= (int)r != d->authority && !strncmp(d->replicas[r].url_display, "postgresql:", 11);
      if (pg)
        printf("    %-16s a PostgreSQL subscriber needs converge's tables in its publication; on\n"
               "    %-16s the authority: ALTER PUBLICATION name ADD TABLE %s, %s (without them\n"
               "    %-16s its lag and confirmations follow the subscription's own position)\n",
               "", "", p->heartbeat_table, p->canary_table, "");
    } else
      printf("    %-16s a divergence is confirmed after the replicas' lag, at most %gs (no\n"
             "    %-16s heartbeat: no apply position to judge rows in flight by)\n",
             "confirm", p->confirm_within, "");
    const cvg_cat_invariants *iv = &d->inv;
    printf("  invariants:%s\n", iv->max_lag_seconds < 0 && iv->max_divergent_rows < 0 &&
                                        iv->max_divergent_fraction < 0 &&
                                        iv->min_agreeing_replicas < 0 &&
                                        iv->max_divergence_age_seconds < 0 && iv->n_aggregates == 0
                                    ? " (none)"
                                    : "");
    if (iv->max_lag_seconds >= 0)
      printf("    max_lag_seconds %g\n", iv->max_lag_seconds);
    if (iv->max_divergent_rows >= 0)
      printf("    max_divergent_rows %lld\n", (long long)iv->max_divergent_rows);
    if (iv->max_divergent_fraction >= 0)
      printf("    max_divergent_fraction %g\n", iv->max_divergent_fraction);
    if (iv->min_agreeing_replicas >= 0)
      printf("    min_agreeing_replicas %lld\n", (long long)iv->min_agreeing_replicas);
    if (iv->max_divergence_age_seconds >= 0)
      printf("    max_divergence_age_seconds %g\n", iv->max_divergence_age_seconds);
    for (size_t a = 0; a < iv->n_aggregates; a++)
      printf("    equal_aggregate %s (tolerance %g)\n", iv->aggregates[a].expr,
             iv->aggregates[a].tolerance);
  }
  cvg_alerts *rules = NULL;
  cvg_alerts_rules_new(&rules, cat);
  explain_alerting(cat, rules);
  cvg_alerts_free(rules);
  if (cat->warnings[0])
    printf("\nwarnings:\n%s", cat->warnings);
}

int cmd_check_config(int argc, char **argv) {
  static const struct option opts[] = {
      {"help", no_argument, NULL, 'h'},
      {"quiet", no_argument, NULL, 'q'},
      {"catalog", required_argument, NULL, 'c'}, /* as watch and repair take it */
      {NULL, 0, NULL, 0}};
  int quiet = 0, c;
  const char *file = NULL;
  optind = 1;
  while ((c = getopt_long(argc, argv, "hqc:", opts, NULL)) != -1) {
    if (c == 'h')
      return print_help(stdout, "check-config"), 0;
    if (c == 'q')
      quiet = 1;
    else if (c == 'c' && !file)
      file = optarg;
    else if (c == 'c')
      return usage_error("check-config", "give exactly one catalog file");
    else
      return usage_error("check-config", "unknown option");
  }
  if (argc - optind != !file)
    return usage_error("check-config", "give exactly one catalog file");
  if (!file)
    file = argv[optind];
  cvg_catalog *cat = NULL;
  cvg_error err;
  cvg_error_clear(&err);
  if (cvg_catalog_load(&cat, file, &err) != CVG_OK) {
    print_error(&err);
    return EXIT_TROUBLE;
  }
  if (!quiet)
    explain(cat);
  else if (cat->warnings[0])
    fputs(cat->warnings, stderr);
  cvg_catalog_free(cat);
  return 0;
}
