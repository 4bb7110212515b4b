/* SPDX-License-Identifier: MIT */
/*
 * Alert delivery, off the monitoring path: a bounded queue drained by one thread that posts to
 * every Alertmanager (API v2) and webhook and appends to the JSON-lines log. Private to
 * lib/alert/.
 */
#ifndef CONVERGE_ALERT_NOTIFY_H
#define CONVERGE_ALERT_NOTIFY_H

#include "converge/catalog.h"
#include "converge/encode.h"
#include "converge/log.h"

#include <jansson.h>

typedef struct cvg_notifier cvg_notifier;

int cvg_notifier_new(cvg_notifier **out, const cvg_catalog *cat, cvg_logger *lg, cvg_error *err);
void cvg_notifier_free(cvg_notifier *n);
/* Queues a delivery: am (array of postable alerts, BORROWED), hook (the same with status,
 * BORROWED), log lines (copied). Never blocks on a receiver; a full queue drops its oldest. */
void cvg_notifier_push(cvg_notifier *n, json_t *am, json_t *hook, const char *log, size_t log_len,
                       double now);
void cvg_notifier_flush(cvg_notifier *n, double timeout);
json_t *cvg_notifier_json(cvg_notifier *n);
int cvg_notifier_metrics(cvg_notifier *n, cvg_buf *b);

#endif
