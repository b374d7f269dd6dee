/* testutil -- small helpers every test file would otherwise write again. */
#ifndef CRM_TEST_UTIL_H
#define CRM_TEST_UTIL_H

#include "value.h"

/* Parses a JSON literal of a test (default limits).  A literal that does not
 * parse is a bug in the test: it is reported and the program aborts.
 * Caller owns the result. */
crm_value *crm_test_json(const char *json);

#endif
