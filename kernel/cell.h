/*
 * cell -- one field's value as text and back, typed by the schema: the
 * cells of `crmd import` / `crmd export` CSV files, and ISO 8601 times.
 *
 * Text forms, by field type:
 *   string, enum, ref   the text itself (valid UTF-8)
 *   int                 -?[0-9]+ within int64
 *   number              a JSON number (-1.5e3); a whole one is an int
 *   bool                true / false (any case), 1 / 0
 *   timestamp           ms since the epoch (-?[0-9]+), or ISO 8601:
 *                       YYYY-MM-DD, then optionally [T ]HH:MM[:SS[.fff]]
 *                       and Z, +HH:MM, +HHMM or +HH (no zone means UTC)
 *   array, map          JSON text of that type
 * Never: reads past len, or accepts inf, nan, hex or trailing text.
 */
#ifndef CRM_CELL_H
#define CRM_CELL_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "schema.h"
#include "value.h"

#define CRM_CELL_MAX_DEPTH 32

/* The value of text[0..len) for field fd; fd NULL (a column a non-strict
 * collection does not declare) reads as a string.  *out is the caller's.
 * BAD_REQUEST with err->msg like "not a whole number: \"4x\"" (the text
 * quoted, cut at 40 bytes). */
int crm_cell_parse(const crm_field *fd, const char *text, size_t len, crm_value **out,
                   crm_err *err);

/* The text of v as a cell of field fd (NULL: by v's own type): a malloc'd,
 * NUL-terminated string the caller frees, *len_out its length; NULL on OOM.
 * A timestamp int is written as ISO 8601 UTC (milliseconds only when not
 * zero) when its year is 0000..9999, else as its number. */
char *crm_cell_format(const crm_field *fd, const crm_value *v, size_t *len_out);

/* ISO 8601 (the forms above) to ms since the epoch: 0, or -1 when s is not
 * such a time. */
int crm_time_parse(const char *s, size_t len, int64_t *ms);
/* ms -> "2024-03-01T12:00:00.250Z" into out (at least 32 bytes); 0, or -1
 * when the year is outside 0000..9999 (out is then untouched). */
int crm_time_format(int64_t ms, char *out);

#endif
