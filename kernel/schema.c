/*
 * schema -- schema files, roles.json, and record validation.
 *
 * A schema file is hostile input like any other: it is size-bounded, parsed
 * by the JSON codec with its depth limit, and every key is checked, so that
 * a typo ("requried") stops start-up instead of silently doing nothing.
 */
#include "schema.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

#define SCHEMA_FILE_MAX (1u << 20)
#define NAME_MAX_LEN 64

static const char *const ftype_names[] = {
    [CRM_F_STRING] = "string", [CRM_F_INT] = "int",   [CRM_F_NUMBER] = "number",
    [CRM_F_BOOL] = "bool",     [CRM_F_TIMESTAMP] = "timestamp", [CRM_F_ENUM] = "enum",
    [CRM_F_REF] = "ref",       [CRM_F_ARRAY] = "array", [CRM_F_MAP] = "map",
    [CRM_F_ANY] = "any",
};

static int ftype_parse(const char *s, crm_ftype *out)
{
    for (int t = CRM_F_STRING; t <= CRM_F_MAP; t++)
        if (strcmp(s, ftype_names[t]) == 0) {
            *out = (crm_ftype)t;
            return 0;
        }
    return -1;
}

int crm_is_system_field(const char *name)
{
    return strcmp(name, "id") == 0 || strcmp(name, "_rev") == 0 ||
           strcmp(name, "_created") == 0 || strcmp(name, "_updated") == 0;
}

/* Collection and field names become LMDB database names and wire keys:
 * keep them to a plain identifier alphabet. */
static int name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > NAME_MAX_LEN || !(s[0] >= 'a' && s[0] <= 'z'))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return 0;
    }
    return 1;
}

static size_t utf8_len(const char *s, size_t n)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            count++;
    return count;
}

/* ---- value checks shared by defaults and records ---- */

/* Checks v against field f; may convert an integral num to int in place for
 * int and timestamp fields (JSON clients send 5.0).  Returns NULL when fine,
 * else a static-ish message in buf. */
static const char *check_scalar(const crm_field *f, crm_ftype t, crm_value *v, char *buf,
                                size_t bufsz)
{
    switch (t) {
    case CRM_F_STRING:
    case CRM_F_REF:
        if (v->type != CRM_T_STR)
            return "must be a string";
        if (t == CRM_F_REF && v->u.str.len == 0)
            return "must be a non-empty id";
        break;
    case CRM_F_ENUM:
        if (v->type != CRM_T_STR)
            return "must be a string";
        if (f) {
            for (size_t i = 0; i < f->nvalues; i++)
                if (strcmp(f->values[i], v->u.str.s) == 0)
                    return NULL;
            { /* the allowed values, as many as fit, so the writer can fix it */
                size_t at = (size_t)snprintf(buf, bufsz, "must be one of");
                for (size_t i = 0; i < f->nvalues && at + 64 < bufsz; i++)
                    at += (size_t)snprintf(buf + at, bufsz - at, "%s \"%s\"", i ? "," : "",
                                           f->values[i]);
                if (at + 64 >= bufsz && at < bufsz)
                    at += (size_t)snprintf(buf + at, bufsz - at, ", ...");
                if (at < bufsz)
                    snprintf(buf + at, bufsz - at, " (got \"%.40s\")", v->u.str.s);
            }
            return buf;
        }
        break;
    case CRM_F_INT:
    case CRM_F_TIMESTAMP:
        if (v->type == CRM_T_NUM) {
            double d = v->u.n;
            if (d != floor(d) || d < -9.2e18 || d > 9.2e18)
                return t == CRM_F_INT ? "must be an integer"
                                      : "must be an integer (milliseconds since the epoch)";
            v->type = CRM_T_INT;
            v->u.i = (int64_t)d;
        }
        if (v->type != CRM_T_INT)
            return t == CRM_F_INT ? "must be an integer"
                                  : "must be an integer (milliseconds since the epoch)";
        break;
    case CRM_F_NUMBER:
        if (!crm_value_is_number(v))
            return "must be a number";
        break;
    case CRM_F_BOOL:
        if (v->type != CRM_T_BOOL)
            return "must be a bool";
        break;
    case CRM_F_MAP:
        if (v->type != CRM_T_MAP)
            return "must be a map";
        break;
    case CRM_F_ARRAY:
        if (v->type != CRM_T_ARR)
            return "must be an array";
        break;
    case CRM_F_ANY:
        break;
    }
    return NULL;
}

static const char *check_field(const crm_field *f, crm_value *v, char *buf, size_t bufsz)
{
    const char *m = check_scalar(f, f->type, v, buf, bufsz);
    if (m)
        return m;
    if (f->type == CRM_F_ARRAY && f->items != CRM_F_ANY) {
        for (size_t i = 0; i < v->u.arr.n; i++) {
            crm_value *it = v->u.arr.items[i];
            char inner[128];
            const char *im = check_scalar(NULL, f->items, it, inner, sizeof inner);
            if (im) {
                snprintf(buf, bufsz, "item %zu %s", i, im);
                return buf;
            }
        }
    }
    if (f->has_min || f->has_max) {
        double x;
        const char *what;
        if (f->type == CRM_F_STRING || f->type == CRM_F_REF || f->type == CRM_F_ENUM) {
            x = (double)utf8_len(v->u.str.s, v->u.str.len);
            what = "length";
        } else if (f->type == CRM_F_ARRAY) {
            x = (double)v->u.arr.n;
            what = "length";
        } else if (crm_value_is_number(v)) {
            x = crm_value_as_double(v);
            what = "value";
        } else {
            return NULL;
        }
        if (f->has_min && x < f->min) {
            snprintf(buf, bufsz, "%s must be at least %g", what, f->min);
            return buf;
        }
        if (f->has_max && x > f->max) {
            snprintf(buf, bufsz, "%s must be at most %g", what, f->max);
            return buf;
        }
    }
    return NULL;
}

/* ---- collection parsing ---- */

static int fail(crm_err *err, const char *field, const char *fmt, const char *arg)
{
    char m[200];
    snprintf(m, sizeof m, fmt, arg ? arg : "");
    if (field)
        return crm_err_set(err, CRM_BAD_REQUEST, "field %s: %s", field, m);
    return crm_err_set(err, CRM_BAD_REQUEST, "%s", m);
}

static int parse_field(const char *name, const crm_value *spec, crm_field *f, crm_err *err)
{
    int on_delete = -1; /* not given */
    memset(f, 0, sizeof *f);
    f->slot = -1;
    f->items = CRM_F_ANY;
    if (!name_ok(name) || crm_is_system_field(name))
        return fail(err, name, "%s", "field names are [a-z][a-z0-9_]*, at most 64 characters, "
                                     "and not a system field");
    if (!(f->name = strdup(name)))
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    if (!spec || spec->type != CRM_T_MAP)
        return fail(err, name, "%s", "must be an object");
    const crm_value *t = crm_map_get(spec, "type");
    if (!t || t->type != CRM_T_STR)
        return fail(err, name, "%s", "needs a \"type\"");
    if (ftype_parse(t->u.str.s, &f->type) != 0)
        return fail(err, name, "unknown type \"%s\"", t->u.str.s);

    for (size_t i = 0; i < spec->u.map.n; i++) {
        const char *k = spec->u.map.kv[i].key;
        const crm_value *v = spec->u.map.kv[i].val;
        if (strcmp(k, "type") == 0 || strcmp(k, "description") == 0) {
            if (v->type != CRM_T_STR)
                return fail(err, name, "\"%s\" must be a string", k);
        } else if (strcmp(k, "required") == 0) {
            if (v->type != CRM_T_BOOL)
                return fail(err, name, "%s", "\"required\" must be true or false");
            f->required = v->u.b;
        } else if (strcmp(k, "min") == 0 || strcmp(k, "max") == 0) {
            if (!crm_value_is_number(v))
                return fail(err, name, "\"%s\" must be a number", k);
            if (f->type == CRM_F_BOOL || f->type == CRM_F_MAP)
                return fail(err, name, "\"%s\" does not apply to this type", k);
            if (k[1] == 'i') {
                f->has_min = 1;
                f->min = crm_value_as_double(v);
            } else {
                f->has_max = 1;
                f->max = crm_value_as_double(v);
            }
        } else if (strcmp(k, "index") == 0) {
            if (v->type == CRM_T_BOOL)
                f->index = v->u.b ? CRM_INDEX_PLAIN : CRM_INDEX_NONE;
            else if (v->type == CRM_T_STR && strcmp(v->u.str.s, "unique") == 0)
                f->index = CRM_INDEX_UNIQUE;
            else
                return fail(err, name, "%s", "\"index\" must be true, false or \"unique\"");
            if (f->index && (f->type == CRM_F_ARRAY || f->type == CRM_F_MAP))
                return fail(err, name, "%s", "array and map fields cannot be indexed");
        } else if (strcmp(k, "values") == 0) {
            if (f->type != CRM_F_ENUM)
                return fail(err, name, "%s", "\"values\" applies to enum fields only");
            if (v->type != CRM_T_ARR || v->u.arr.n == 0)
                return fail(err, name, "%s", "\"values\" must be a non-empty list of strings");
            f->values = calloc(v->u.arr.n, sizeof *f->values);
            if (!f->values)
                return crm_err_set(err, CRM_INTERNAL, "out of memory");
            for (size_t j = 0; j < v->u.arr.n; j++) {
                const crm_value *e = v->u.arr.items[j];
                if (e->type != CRM_T_STR)
                    return fail(err, name, "%s", "\"values\" must be a non-empty list of strings");
                for (size_t q = 0; q < f->nvalues; q++)
                    if (strcmp(f->values[q], e->u.str.s) == 0)
                        return fail(err, name, "\"values\" lists \"%s\" twice", e->u.str.s);
                if (!(f->values[f->nvalues++] = strdup(e->u.str.s)))
                    return crm_err_set(err, CRM_INTERNAL, "out of memory");
            }
        } else if (strcmp(k, "to") == 0) {
            if (f->type != CRM_F_REF)
                return fail(err, name, "%s", "\"to\" applies to ref fields only");
            if (v->type != CRM_T_STR || !name_ok(v->u.str.s))
                return fail(err, name, "%s", "\"to\" must name a collection");
            if (!(f->ref_to = strdup(v->u.str.s)))
                return crm_err_set(err, CRM_INTERNAL, "out of memory");
        } else if (strcmp(k, "items") == 0) {
            if (f->type != CRM_F_ARRAY)
                return fail(err, name, "%s", "\"items\" applies to array fields only");
            if (v->type != CRM_T_STR || ftype_parse(v->u.str.s, &f->items) != 0 ||
                f->items == CRM_F_ENUM || f->items == CRM_F_REF || f->items == CRM_F_ARRAY)
                return fail(err, name, "%s",
                            "\"items\" must be one of string int number bool timestamp map");
        } else if (strcmp(k, "personal") == 0) {
            if (v->type != CRM_T_BOOL)
                return fail(err, name, "%s", "\"personal\" must be true or false");
            f->personal = v->u.b;
        } else if (strcmp(k, "on_delete") == 0) {
            if (f->type != CRM_F_REF)
                return fail(err, name, "%s", "\"on_delete\" applies to ref fields only");
            if (v->type == CRM_T_STR && strcmp(v->u.str.s, "restrict") == 0)
                on_delete = CRM_ON_DELETE_RESTRICT;
            else if (v->type == CRM_T_STR && strcmp(v->u.str.s, "cascade") == 0)
                on_delete = CRM_ON_DELETE_CASCADE;
            else if (v->type == CRM_T_STR && strcmp(v->u.str.s, "set_null") == 0)
                on_delete = CRM_ON_DELETE_SET_NULL;
            else if (v->type == CRM_T_STR && strcmp(v->u.str.s, "none") == 0)
                on_delete = CRM_ON_DELETE_NONE;
            else
                return fail(err, name, "%s",
                            "\"on_delete\" must be \"restrict\", \"cascade\", \"set_null\" or "
                            "\"none\"");
        } else if (strcmp(k, "default") != 0) {
            return fail(err, name, "unknown option \"%s\"", k);
        }
    }
    if (f->type == CRM_F_ENUM && f->nvalues == 0)
        return fail(err, name, "%s", "an enum needs \"values\"");
    if (f->type == CRM_F_REF && !f->ref_to)
        return fail(err, name, "%s", "a ref needs \"to\"");
    if (f->type == CRM_F_REF) {
        if (on_delete < 0)
            on_delete = f->required ? CRM_ON_DELETE_RESTRICT : CRM_ON_DELETE_SET_NULL;
        if (on_delete == CRM_ON_DELETE_SET_NULL && f->required)
            return fail(err, name, "%s",
                        "\"on_delete\": \"set_null\" cannot apply to a required ref");
        f->on_delete = (crm_on_delete)on_delete;
    }
    /* a ref is the link erasure follows, not a personal value; erasing it
     * would orphan the record */
    if (f->personal && f->type == CRM_F_REF)
        return fail(err, name, "%s", "\"personal\" does not apply to ref fields");
    if (f->has_min && f->has_max && f->min > f->max)
        return fail(err, name, "%s", "\"min\" is greater than \"max\"");
    const crm_value *d = crm_map_get(spec, "default");
    if (d && d->type != CRM_T_NIL) {
        char buf[160];
        const char *m;
        if (!(f->def = crm_value_dup(d)))
            return crm_err_set(err, CRM_INTERNAL, "out of memory");
        if ((m = check_field(f, f->def, buf, sizeof buf)))
            return fail(err, name, "default %s", m);
    }
    return CRM_OK;
}

static void field_clear(crm_field *f)
{
    free(f->name);
    crm_value_free(f->def);
    for (size_t i = 0; i < f->nvalues; i++)
        free(f->values[i]);
    free(f->values);
    free(f->ref_to);
}

void crm_collection_clear(crm_collection *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nfields; i++)
        field_clear(&c->fields[i]);
    free(c->fields);
    free(c->name);
    free(c->id_prefix);
    free(c->about_coll);
    free(c->about_id);
    crm_value_free(c->source);
    memset(c, 0, sizeof *c);
}

int crm_collection_parse(const crm_value *src, crm_collection *c, crm_err *err)
{
    int rc;
    memset(c, 0, sizeof *c);
    c->strict = 1;
    if (!src || src->type != CRM_T_MAP)
        return crm_err_set(err, CRM_BAD_REQUEST, "a schema must be a JSON object");
    const crm_value *name = crm_map_get(src, "collection");
    if (!name || name->type != CRM_T_STR || !name_ok(name->u.str.s))
        return crm_err_set(err, CRM_BAD_REQUEST,
                           "\"collection\" must be a name of [a-z][a-z0-9_]*, at most 64 long");
    if (strcmp(name->u.str.s, "methods") == 0)
        return crm_err_set(err, CRM_BAD_REQUEST, "no collection may be called \"methods\"");
    if (!(c->name = strdup(name->u.str.s)))
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    const crm_value *fields = NULL;
    for (size_t i = 0; i < src->u.map.n; i++) {
        const char *k = src->u.map.kv[i].key;
        const crm_value *v = src->u.map.kv[i].val;
        if (strcmp(k, "collection") == 0) {
            continue;
        } else if (strcmp(k, "strict") == 0) {
            if (v->type != CRM_T_BOOL)
                return crm_err_set(err, CRM_BAD_REQUEST, "\"strict\" must be true or false");
            c->strict = v->u.b;
        } else if (strcmp(k, "description") == 0) {
            if (v->type != CRM_T_STR)
                return crm_err_set(err, CRM_BAD_REQUEST, "\"description\" must be a string");
        } else if (strcmp(k, "id_prefix") == 0) {
            if (v->type != CRM_T_STR || v->u.str.len > 16 || !crm_utf8_valid(v->u.str.s, v->u.str.len))
                return crm_err_set(err, CRM_BAD_REQUEST,
                                   "\"id_prefix\" must be a string of at most 16 bytes");
            for (size_t j = 0; j < v->u.str.len; j++) {
                char ch = v->u.str.s[j];
                if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                      (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
                    return crm_err_set(err, CRM_BAD_REQUEST,
                                       "\"id_prefix\" may hold letters, digits, _ and - only");
            }
            if (!(c->id_prefix = strdup(v->u.str.s)))
                return crm_err_set(err, CRM_INTERNAL, "out of memory");
        } else if (strcmp(k, "fields") == 0) {
            fields = v;
        } else if (strcmp(k, "about") == 0) {
            const crm_value *ac = crm_map_get(v, "collection"), *ai = crm_map_get(v, "id");
            if (v->type != CRM_T_MAP || v->u.map.n != 2 || !ac || ac->type != CRM_T_STR ||
                !ai || ai->type != CRM_T_STR)
                return crm_err_set(err, CRM_BAD_REQUEST,
                                   "\"about\" must be {\"collection\": FIELD, \"id\": FIELD}");
            if (!(c->about_coll = strdup(ac->u.str.s)) || !(c->about_id = strdup(ai->u.str.s)))
                return crm_err_set(err, CRM_INTERNAL, "out of memory");
        } else {
            return crm_err_set(err, CRM_BAD_REQUEST, "unknown key \"%s\"", k);
        }
    }
    if (!c->id_prefix && !(c->id_prefix = strdup("")))
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    if (!fields || fields->type != CRM_T_MAP)
        return crm_err_set(err, CRM_BAD_REQUEST, "\"fields\" must be an object");
    if (fields->u.map.n > 1024)
        return crm_err_set(err, CRM_BAD_REQUEST, "at most 1024 fields per collection");
    c->fields = calloc(fields->u.map.n ? fields->u.map.n : 1, sizeof *c->fields);
    if (!c->fields)
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    for (size_t i = 0; i < fields->u.map.n; i++) {
        crm_field *f = &c->fields[c->nfields++];
        if ((rc = parse_field(fields->u.map.kv[i].key, fields->u.map.kv[i].val, f, err)) != CRM_OK)
            return rc;
        if (f->index)
            f->slot = (int)c->nindexes++;
    }
    if (c->about_coll) {
        const char *names[2] = {c->about_coll, c->about_id};
        for (int i = 0; i < 2; i++) {
            const crm_field *f = crm_collection_field(c, names[i]);
            if (!f || (f->type != CRM_F_STRING && f->type != CRM_F_ENUM && f->type != CRM_F_REF))
                return crm_err_set(err, CRM_BAD_REQUEST,
                                   "\"about\": %s must name a string field of the collection",
                                   names[i]);
        }
    }
    if (!(c->source = crm_value_dup(src)))
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    return CRM_OK;
}

/* ---- roles ---- */

static int check_perm_list(const crm_value *list, const char *role, const char *coll,
                           crm_err *err)
{
    if (list->type != CRM_T_ARR)
        return crm_err_set(err, CRM_BAD_REQUEST, "role %s: %s: permissions must be a list",
                           role, coll);
    for (size_t i = 0; i < list->u.arr.n; i++) {
        const crm_value *p = list->u.arr.items[i];
        if (p->type != CRM_T_STR ||
            (strcmp(p->u.str.s, "read") && strcmp(p->u.str.s, "write") &&
             strcmp(p->u.str.s, "subscribe")))
            return crm_err_set(err, CRM_BAD_REQUEST,
                               "role %s: %s: permissions are \"read\", \"write\", \"subscribe\"",
                               role, coll);
    }
    return CRM_OK;
}

int crm_roles_check(const crm_value *doc, const crm_schema *s, crm_err *err)
{
    int rc;
    if (!doc || doc->type != CRM_T_MAP)
        return crm_err_set(err, CRM_BAD_REQUEST, "must be an object {\"roles\": {...}}");
    const crm_value *roles = crm_map_get(doc, "roles");
    if (!roles || roles->type != CRM_T_MAP || doc->u.map.n != 1)
        return crm_err_set(err, CRM_BAD_REQUEST, "must be an object {\"roles\": {...}}");
    for (size_t r = 0; r < roles->u.map.n; r++) {
        const char *role = roles->u.map.kv[r].key;
        const crm_value *grants = roles->u.map.kv[r].val;
        if (!name_ok(role))
            return crm_err_set(err, CRM_BAD_REQUEST, "role names are [a-z][a-z0-9_]*");
        if (strcmp(role, "admin") == 0)
            return crm_err_set(err, CRM_BAD_REQUEST, "role admin is built in; do not declare it");
        if (grants->type != CRM_T_MAP)
            return crm_err_set(err, CRM_BAD_REQUEST, "role %s must be an object", role);
        for (size_t g = 0; g < grants->u.map.n; g++) {
            const char *coll = grants->u.map.kv[g].key;
            const crm_value *v = grants->u.map.kv[g].val;
            if (strcmp(coll, "methods") == 0) {
                if (v->type != CRM_T_ARR)
                    return crm_err_set(err, CRM_BAD_REQUEST, "role %s: methods must be a list",
                                       role);
                for (size_t i = 0; i < v->u.arr.n; i++)
                    if (v->u.arr.items[i]->type != CRM_T_STR || v->u.arr.items[i]->u.str.len == 0)
                        return crm_err_set(err, CRM_BAD_REQUEST,
                                           "role %s: methods must be names", role);
                continue;
            }
            const crm_collection *c = NULL;
            if (strcmp(coll, "*") != 0 && !(c = crm_schema_find(s, coll)))
                return crm_err_set(err, CRM_BAD_REQUEST, "role %s: unknown collection \"%s\"",
                                   role, coll);
            if (v->type == CRM_T_ARR) {
                if ((rc = check_perm_list(v, role, coll, err)) != CRM_OK)
                    return rc;
                continue;
            }
            if (v->type != CRM_T_MAP)
                return crm_err_set(err, CRM_BAD_REQUEST,
                                   "role %s: %s: a list or {\"can\": [...], \"hide\": [...]}",
                                   role, coll);
            for (size_t i = 0; i < v->u.map.n; i++) {
                const char *k = v->u.map.kv[i].key;
                const crm_value *x = v->u.map.kv[i].val;
                if (strcmp(k, "can") == 0) {
                    if ((rc = check_perm_list(x, role, coll, err)) != CRM_OK)
                        return rc;
                } else if (strcmp(k, "hide") == 0) {
                    if (x->type != CRM_T_ARR)
                        return crm_err_set(err, CRM_BAD_REQUEST, "role %s: %s: hide must be a list",
                                           role, coll);
                    for (size_t j = 0; j < x->u.arr.n; j++) {
                        const crm_value *h = x->u.arr.items[j];
                        if (h->type != CRM_T_STR)
                            return crm_err_set(err, CRM_BAD_REQUEST,
                                               "role %s: %s: hide must list field names", role,
                                               coll);
                        if (c && c->strict && !crm_collection_field(c, h->u.str.s))
                            return crm_err_set(err, CRM_BAD_REQUEST,
                                               "role %s: %s: hides unknown field \"%s\"", role,
                                               coll, h->u.str.s);
                        if (crm_is_system_field(h->u.str.s))
                            return crm_err_set(err, CRM_BAD_REQUEST,
                                               "role %s: %s: system fields cannot be hidden",
                                               role, coll);
                    }
                } else {
                    return crm_err_set(err, CRM_BAD_REQUEST, "role %s: %s: unknown key \"%s\"",
                                       role, coll, k);
                }
            }
        }
    }
    return CRM_OK;
}

/* ---- schema sets ---- */

void crm_schema_free(crm_schema *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->ncolls; i++)
        crm_collection_clear(&s->colls[i]);
    free(s->colls);
    crm_value_free(s->roles);
    free(s);
}

const crm_collection *crm_schema_find(const crm_schema *s, const char *coll)
{
    if (!s || !coll)
        return NULL;
    for (size_t i = 0; i < s->ncolls; i++)
        if (strcmp(s->colls[i].name, coll) == 0)
            return &s->colls[i];
    return NULL;
}

const crm_field *crm_collection_field(const crm_collection *c, const char *name)
{
    for (size_t i = 0; i < c->nfields; i++)
        if (strcmp(c->fields[i].name, name) == 0)
            return &c->fields[i];
    return NULL;
}

/* Cross-collection checks once every collection is known. */
static int schema_link(crm_schema *s, crm_err *err)
{
    for (size_t i = 0; i < s->ncolls; i++) {
        const crm_collection *c = &s->colls[i];
        for (size_t j = 0; j < i; j++)
            if (strcmp(s->colls[j].name, c->name) == 0)
                return crm_err_set(err, CRM_BAD_REQUEST, "collection %s is declared twice",
                                   c->name);
        for (size_t f = 0; f < c->nfields; f++)
            if (c->fields[f].ref_to && !crm_schema_find(s, c->fields[f].ref_to))
                return crm_err_set(err, CRM_BAD_REQUEST,
                                   "%s: field %s: \"to\" names unknown collection \"%s\"",
                                   c->name, c->fields[f].name, c->fields[f].ref_to);
    }
    if (s->roles) {
        crm_err e;
        crm_value wrapper = {.type = CRM_T_MAP};
        crm_kv kv = {.key = "roles", .klen = 5, .val = s->roles};
        wrapper.u.map.kv = &kv;
        wrapper.u.map.n = 1;
        if (crm_roles_check(&wrapper, s, &e) != CRM_OK)
            return crm_err_set(err, CRM_BAD_REQUEST, "roles.json: %s", e.msg);
    }
    return CRM_OK;
}

int crm_schema_from_values(const crm_value *const *colls, size_t n, const crm_value *roles,
                           crm_schema **out, crm_err *err)
{
    int rc;
    crm_schema *s = calloc(1, sizeof *s);
    *out = NULL;
    if (!s || !(s->colls = calloc(n ? n : 1, sizeof *s->colls))) {
        free(s);
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        crm_err e;
        rc = crm_collection_parse(colls[i], &s->colls[s->ncolls], &e);
        s->ncolls++;
        if (rc != CRM_OK) {
            crm_err_set(err, rc, "collection %zu: %s", i, e.msg);
            goto fail;
        }
    }
    if (roles) {
        const crm_value *inner = crm_map_get(roles, "roles");
        crm_err e;
        if (crm_roles_check(roles, s, &e) != CRM_OK) {
            rc = crm_err_set(err, CRM_BAD_REQUEST, "roles: %s", e.msg);
            goto fail;
        }
        if (!(s->roles = crm_value_dup(inner))) {
            rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
            goto fail;
        }
    }
    if ((rc = schema_link(s, err)) != CRM_OK)
        goto fail;
    *out = s;
    return CRM_OK;
fail:
    crm_schema_free(s);
    return rc;
}

static int read_file(const char *path, char **buf, size_t *len, crm_err *err)
{
    FILE *f = fopen(path, "rb");
    size_t n;
    *buf = NULL;
    if (!f)
        return crm_err_set(err, CRM_BAD_REQUEST, "%s: %s", path, strerror(errno));
    *buf = malloc(SCHEMA_FILE_MAX + 1);
    if (!*buf) {
        fclose(f);
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    }
    n = fread(*buf, 1, SCHEMA_FILE_MAX + 1, f);
    fclose(f);
    if (n > SCHEMA_FILE_MAX)
        return crm_err_set(err, CRM_TOO_LARGE, "%s: larger than %u bytes", path, SCHEMA_FILE_MAX);
    *len = n;
    return CRM_OK;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The collections the kernel itself writes (bus: failed after-hooks and
 * timers), added when the folder does not declare them (schemas/ does,
 * with this same text, so operators can read and change it). */
static const char BUILTIN_DEAD_LETTERS[] =
    "{\"collection\":\"dead_letters\",\"description\":\"After-hook events and timers that kept failing, parked with their error after the last retry (written by the kernel's bus; crmd adds this collection when the schemas folder does not declare it).\",\"strict\":false,\"id_prefix\":\"dl_\",\"fields\":{\"kind\":{\"type\":\"enum\",\"required\":true,\"values\":[\"after_hook\",\"timer\"],\"index\":true},\"handler\":{\"type\":\"string\",\"required\":true,\"index\":true,\"description\":\"after-hook consumer name, or timer name\"},\"owner\":{\"type\":\"string\",\"description\":\"the plugin or script that registered it\"},\"error\":{\"type\":\"string\",\"required\":true},\"attempts\":{\"type\":\"int\",\"min\":0},\"seq\":{\"type\":\"int\",\"index\":true,\"description\":\"after_hook: the change's feed seq\"},\"collection\":{\"type\":\"string\"},\"op\":{\"type\":\"string\"},\"record_id\":{\"type\":\"string\",\"index\":true},\"payload\":{\"type\":\"map\",\"description\":\"timer: its payload\"},\"failed_at\":{\"type\":\"timestamp\",\"index\":true}}}";

static int add_builtin(crm_value ***docs, size_t *ndocs, crm_err *err)
{
    crm_value **grown, *v = NULL;
    crm_err e;
    for (size_t i = 0; i < *ndocs; i++)
        if (strcmp(crm_map_str((*docs)[i], "collection", ""), "dead_letters") == 0)
            return CRM_OK;
    if (!(v = crm_json_decode(BUILTIN_DEAD_LETTERS, sizeof BUILTIN_DEAD_LETTERS - 1, NULL, &e)))
        return crm_err_set(err, CRM_INTERNAL, "built-in dead_letters: %s", e.msg);
    if (!(grown = realloc(*docs, (*ndocs + 1) * sizeof *grown))) {
        crm_value_free(v);
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    }
    grown[(*ndocs)++] = v;
    *docs = grown;
    return CRM_OK;
}

int crm_schema_load_dir(const char *dir, crm_schema **out, crm_err *err)
{
    DIR *d = opendir(dir);
    char **names = NULL;
    size_t nnames = 0, cap = 0;
    crm_value **docs = NULL, *roles = NULL;
    size_t ndocs = 0;
    int rc = CRM_OK;
    crm_limits lim = {SCHEMA_FILE_MAX, 32};
    struct dirent *de;

    *out = NULL;
    if (!d)
        return crm_err_set(err, CRM_BAD_REQUEST, "schemas folder %s: %s", dir, strerror(errno));
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < 6 || strcmp(de->d_name + l - 5, ".json") != 0 || de->d_name[0] == '.')
            continue;
        if (nnames == cap) {
            char **nn = realloc(names, (cap = cap ? cap * 2 : 16) * sizeof *names);
            if (!nn) {
                rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
                goto done;
            }
            names = nn;
        }
        if (!(names[nnames] = strdup(de->d_name))) {
            rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
            goto done;
        }
        nnames++;
    }
    if (nnames) /* qsort(NULL, 0, ...) is undefined */
        qsort(names, nnames, sizeof *names, cmp_names);
    docs = calloc(nnames ? nnames : 1, sizeof *docs);
    if (!docs) {
        rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < nnames; i++) {
        char path[4096];
        char *buf;
        size_t len = 0;
        crm_err e;
        crm_value *v;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if ((rc = read_file(path, &buf, &len, err)) != CRM_OK) {
            free(buf);
            goto done;
        }
        v = crm_json_decode(buf, len, &lim, &e);
        free(buf);
        if (!v) {
            rc = crm_err_set(err, CRM_BAD_REQUEST, "%s: %s", path, e.msg);
            goto done;
        }
        if (strcmp(names[i], "roles.json") == 0) {
            roles = v;
            continue;
        }
        docs[ndocs++] = v;
        /* Check each file alone first so the message names the right file. */
        crm_collection tmp;
        rc = crm_collection_parse(v, &tmp, &e);
        if (rc == CRM_OK) {
            size_t stem = strlen(names[i]) - 5;
            if (strlen(tmp.name) != stem || strncmp(tmp.name, names[i], stem) != 0) {
                rc = crm_err_set(err, CRM_BAD_REQUEST,
                                 "%s: declares collection \"%s\"; the file must be named %s.json",
                                 path, tmp.name, tmp.name);
            }
            /* refs to unknown collections, here so the message names this file */
            for (size_t f = 0; rc == CRM_OK && f < tmp.nfields; f++) {
                const char *to = tmp.fields[f].ref_to;
                char want[NAME_MAX_LEN + 8];
                int found = 0;
                if (!to)
                    continue;
                snprintf(want, sizeof want, "%s.json", to);
                for (size_t j = 0; j < nnames && !found; j++)
                    found = strcmp(names[j], want) == 0 && strcmp(want, "roles.json") != 0;
                if (!found)
                    rc = crm_err_set(err, CRM_BAD_REQUEST,
                                     "%s: field %s: \"to\" names unknown collection \"%s\"", path,
                                     tmp.fields[f].name, to);
            }
        } else {
            crm_err_set(err, rc, "%s: %s", path, e.msg);
        }
        crm_collection_clear(&tmp);
        if (rc != CRM_OK)
            goto done;
    }
    if (ndocs == 0) {
        rc = crm_err_set(err, CRM_BAD_REQUEST, "schemas folder %s holds no collection", dir);
        goto done;
    }
    if ((rc = add_builtin(&docs, &ndocs, err)) != CRM_OK)
        goto done;
    {
        crm_err e;
        rc = crm_schema_from_values((const crm_value *const *)docs, ndocs, NULL, out, &e);
        if (rc != CRM_OK) {
            crm_err_set(err, rc, "%s: %s", dir, e.msg);
        } else if (roles) { /* checked here so the message names roles.json */
            if ((rc = crm_roles_check(roles, *out, &e)) != CRM_OK)
                crm_err_set(err, rc, "%s/roles.json: %s", dir, e.msg);
            else if (!((*out)->roles = crm_value_dup(crm_map_get(roles, "roles"))))
                rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
            if (rc != CRM_OK) {
                crm_schema_free(*out);
                *out = NULL;
            }
        }
    }
done:
    if (d)
        closedir(d);
    for (size_t i = 0; i < nnames; i++)
        free(names[i]);
    free(names);
    for (size_t i = 0; i < ndocs; i++)
        crm_value_free(docs[i]);
    free(docs);
    crm_value_free(roles);
    return rc;
}

/* ---- record validation ---- */

static int add_detail(crm_value **details, crm_err *err, int *nproblems, const char *field,
                      const char *msg)
{
    if ((*nproblems)++ == 0)
        crm_err_set(err, CRM_VALIDATION, "%s: %s", field, msg);
    if (!details)
        return 0;
    if (!*details) {
        crm_value *fields = crm_value_map();
        *details = crm_value_map();
        if (!*details || !fields || crm_map_set(*details, "fields", fields) != 0) {
            if (!*details)
                crm_value_free(fields);
            return -1;
        }
    }
    return crm_map_set(crm_map_get(*details, "fields"), field, crm_value_cstr(msg));
}

int crm_schema_validate(const crm_collection *c, crm_value *rec, int is_create,
                        crm_value **details, crm_err *err)
{
    int nproblems = 0;
    char buf[200];
    crm_err local;

    if (!err)
        err = &local;
    if (details)
        *details = NULL;
    if (!rec || rec->type != CRM_T_MAP)
        return crm_err_set(err, CRM_VALIDATION, "a record must be a map");
    /* nil means absent */
    for (size_t i = 0; i < rec->u.map.n;) {
        if (rec->u.map.kv[i].val->type == CRM_T_NIL &&
            !crm_is_system_field(rec->u.map.kv[i].key))
            crm_map_del(rec, rec->u.map.kv[i].key);
        else
            i++;
    }
    for (size_t i = 0; i < rec->u.map.n; i++) {
        const char *k = rec->u.map.kv[i].key;
        const crm_field *f;
        const char *m;
        if (crm_is_system_field(k))
            continue;
        if (!(f = crm_collection_field(c, k))) {
            if (c->strict)
                add_detail(details, err, &nproblems, k, "unknown field");
            else if (k[0] == '_')
                add_detail(details, err, &nproblems, k, "names starting with _ are reserved");
            continue;
        }
        if ((m = check_field(f, rec->u.map.kv[i].val, buf, sizeof buf)))
            add_detail(details, err, &nproblems, k, m);
    }
    for (size_t i = 0; i < c->nfields; i++) {
        const crm_field *f = &c->fields[i];
        if (crm_map_get(rec, f->name))
            continue;
        if (is_create && f->def) {
            crm_value *d = crm_value_dup(f->def);
            if (!d || crm_map_set(rec, f->name, d) != 0)
                return crm_err_set(err, CRM_INTERNAL, "out of memory");
        } else if (f->required) {
            add_detail(details, err, &nproblems, f->name, "is required");
        }
    }
    if (nproblems) {
        if (nproblems > 1) {
            size_t l = strlen(err->msg);
            snprintf(err->msg + l, sizeof err->msg - l, " (and %d more)", nproblems - 1);
        }
        err->code = CRM_VALIDATION;
        return CRM_VALIDATION;
    }
    return CRM_OK;
}

const char *crm_ftype_name(crm_ftype t)
{
    return (unsigned)t <= CRM_F_ANY ? ftype_names[t] : "?";
}
