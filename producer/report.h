/* report.h: kone-producer's output lines (pure formatting, jansson does the escaping).
 *
 * stdout gets one JSON object per reported input line, in input order:
 *   {"line":3,"job_id":"j-3","status":"confirmed"}
 *   {"line":4,"job_id":null,"status":"refused","error":"invalid JSON: ..."}
 * stderr gets one summary line at the end. docs/producer.md documents both.
 */
#ifndef KD_PRODUCER_REPORT_H
#define KD_PRODUCER_REPORT_H

#include <jansson.h>
#include <stddef.h>

/* A JSON string of s; bytes that are not UTF-8 become '?' rather than losing the line (a
 * job id or a broker's text can hold anything). NULL only when out of memory. */
json_t *kd_report_json_string(const char *s);

/* A malloc'd line without the newline, or NULL when out of memory. job_id NULL or "" is
 * reported as null; error NULL means confirmed. Bytes that are not UTF-8 become '?'. */
char *kd_report_line(long line, const char *job_id, const char *error);

/* "kone-producer: 998 confirmed, 2 refused (1000 jobs in 0.52 s, 1923 jobs/s)" */
void kd_report_summary(char *buf, size_t len, long confirmed, long refused, double seconds);

#endif
