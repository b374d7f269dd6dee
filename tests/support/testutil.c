/* testutil -- small helpers shared by the tests. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

crm_value *crm_test_json(const char *json)
{
    crm_err err;
    crm_value *v = crm_json_decode(json, strlen(json), NULL, &err);
    if (!v) {
        fprintf(stderr, "bad test JSON %s: %s\n", json, err.msg);
        abort();
    }
    return v;
}
