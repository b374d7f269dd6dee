/*
 * schema -- collections declared by the schemas folder (one JSON file each), and record validation.
 *
 * Owns: reading and checking schema files (a bad file is refused with its
 * name and the problem), roles.json (read as the roles declaration, shape
 * checked, kept as a value for the net layer), validating every write
 * against its collection and filling defaults on create.
 * Never: touches LMDB.  Checks that need the store (refs exist, unique
 * indexes) are done by store with the facts this module gives it.
 */
#ifndef CRM_SCHEMA_H
#define CRM_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "value.h"

typedef enum crm_ftype {
    CRM_F_STRING = 0,
    CRM_F_INT,
    CRM_F_NUMBER,
    CRM_F_BOOL,
    CRM_F_TIMESTAMP,
    CRM_F_ENUM,
    CRM_F_REF,
    CRM_F_ARRAY,
    CRM_F_MAP,
    CRM_F_ANY /* system use only: no type check */
} crm_ftype;

enum { CRM_INDEX_NONE = 0, CRM_INDEX_PLAIN = 1, CRM_INDEX_UNIQUE = 2 };

/* What a ref does when the record it names is deleted ("on_delete"):
 * restrict refuses the delete (CONFLICT) while a record refers to it;
 * cascade deletes the referring records, right after it in the same
 * transaction (their own refs' rules apply in turn); set_null removes the
 * field from them; none leaves them as they are (for records a plugin or
 * script cleans up itself, such as segment members).  Default: restrict
 * for a required ref, set_null for an optional one (docs/schemas.md). */
typedef enum crm_on_delete {
    CRM_ON_DELETE_RESTRICT = 0,
    CRM_ON_DELETE_CASCADE,
    CRM_ON_DELETE_SET_NULL,
    CRM_ON_DELETE_NONE
} crm_on_delete;

typedef struct crm_field {
    char *name;
    crm_ftype type;
    int required;
    crm_value *def; /* default, or NULL */
    int has_min, has_max;
    double min, max; /* value bounds, or length bounds for string/array */
    int index;       /* CRM_INDEX_* */
    char **values;   /* enum values */
    size_t nvalues;
    char *ref_to;    /* ref: target collection */
    crm_on_delete on_delete; /* ref: when the target is deleted */
    crm_ftype items; /* array: element type; CRM_F_ANY when not given */
    int slot;        /* position among the collection's indexed fields, or -1 */
    int personal;    /* "personal": true: erased by privacy.erase (docs/privacy.md) */
} crm_field;

typedef struct crm_collection {
    char *name;
    char *id_prefix; /* "" when none */
    int strict;
    crm_field *fields;
    size_t nfields;
    size_t nindexes; /* fields with index != NONE */
    crm_value *source; /* the schema as loaded (served by the `schema` op) */
    /* "about": {"collection": F1, "id": F2}: each record is about the record
     * its string fields F1 and F2 name (a copy of that record's data kept
     * elsewhere, such as a webhook delivery's body).  privacy.export and
     * privacy.erase treat such records, and their feed entries, as related
     * to the record they name (docs/privacy.md).  NULL when not declared. */
    char *about_coll, *about_id;
} crm_collection;

typedef struct crm_schema {
    crm_collection *colls;
    size_t ncolls;
    crm_value *roles; /* roles.json's "roles" map, or NULL when absent */
} crm_schema;

/* Loads every *.json in dir (roles.json is the roles file, other files are
 * collections, sorted by name so start-up is deterministic).  On success
 * *out is a schema the caller frees with crm_schema_free.  On failure err
 * names the file and the problem ("schemas/contacts.json: field email:
 * unknown type \"text\""). */
int crm_schema_load_dir(const char *dir, crm_schema **out, crm_err *err);

/* Builds a schema from values already in memory (tests, fuzzing): colls is an
 * array of collection objects; roles may be NULL.  Borrowed inputs. */
int crm_schema_from_values(const crm_value *const *colls, size_t n, const crm_value *roles,
                           crm_schema **out, crm_err *err);

/* Checks one collection object; what crm_schema_load_dir does per file.
 * On success *out is filled (caller frees with crm_collection_clear). */
int crm_collection_parse(const crm_value *src, crm_collection *out, crm_err *err);
void crm_collection_clear(crm_collection *c);

/* Checks a roles.json document's shape against the collections. */
int crm_roles_check(const crm_value *doc, const crm_schema *s, crm_err *err);

void crm_schema_free(crm_schema *s);

/* Borrowed lookups; NULL when absent. */
const crm_collection *crm_schema_find(const crm_schema *s, const char *coll);
const crm_field *crm_collection_field(const crm_collection *c, const char *name);

/* "string", "int", ... */
const char *crm_ftype_name(crm_ftype t);

/* True for id, _rev, _created, _updated. */
int crm_is_system_field(const char *name);

/* Validates a record for a write, in place.
 *   create: rec is the whole new record; defaults are filled in for absent
 *           fields; required fields must be present.
 *   update: rec is the merged record (old + patch); required fields must
 *           still be present; defaults are not re-applied.
 * Fields set to nil are removed first (nil means absent).  System fields in
 * rec are left alone (store owns them).  On failure returns CRM_VALIDATION
 * and, when details is non-NULL, sets *details to a new value
 * {"fields": {field: message, ...}} the caller owns (the wire's VALIDATION
 * details); err->msg holds the first problem as "field: message". */
int crm_schema_validate(const crm_collection *c, crm_value *rec, int is_create,
                        crm_value **details, crm_err *err);

#endif
