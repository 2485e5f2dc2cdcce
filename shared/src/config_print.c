/* config_print.c: what the configuration table prints (see kd_config.h): --help,
 * --config-dump, --config-table (the markdown of docs/configuration.md) and --config-json
 * (the same table for tools: the Helm chart's values.schema.json is generated from it).
 *
 * All three are generated from the table (kd_config_keys.h) so that they cannot disagree
 * with what the loader accepts. Secret values are never printed: --help shows no default
 * for them and --config-dump shows "<set>" or nothing.
 */
#include "kd_config.h"

#include <jansson.h>
#include <string.h>

/* The programs of a key's PROGRAMS mask, by name. */
static const struct {
    unsigned bit;
    const char *name;
} prog_names[] = {
    {KD_PROG_WORKER, "worker"},
    {KD_PROG_PRODUCER, "producer"},
    {KD_PROG_SIM, "sim"},
    {KD_PROG_EVENTS, "events"},
};
#define KD_NPROGS (sizeof prog_names / sizeof prog_names[0])

static const char *prog_list(unsigned progs, char *buf, size_t len)
{
    buf[0] = '\0';
    for (size_t i = 0; i < KD_NPROGS; i++) {
        if (!(progs & prog_names[i].bit))
            continue;
        if (buf[0])
            strncat(buf, ", ", len - strlen(buf) - 1);
        strncat(buf, prog_names[i].name, len - strlen(buf) - 1);
    }
    return buf;
}

/* Each type's name in --help and the docs, and in --config-json (for tools). */
static const struct {
    const char *human, *json;
} type_names[] = {
    [KD_CT_STR] = {"string", "string"},
    [KD_CT_INT] = {"integer", "integer"},
    [KD_CT_DOUBLE] = {"number", "number"},
    [KD_CT_BOOL] = {"bool", "bool"},
    [KD_CT_ENUM] = {"enum", "enum"},
    [KD_CT_ENUMI] = {"enum (any case)", "enum_any_case"},
    [KD_CT_MS] = {"duration (ms)", "duration_ms"},
    [KD_CT_S] = {"duration (s)", "duration_s"},
    [KD_CT_H] = {"duration (h)", "duration_h"},
};

static const char *type_name(kd_config_type t)
{
    return type_names[t].human;
}

/* What the key accepts: "1..65535", "debug, info, warn, error", "true, false" or "". */
static const char *bounds(const kd_config_key *k, char *buf, size_t len)
{
    buf[0] = '\0';
    switch (k->type) {
    case KD_CT_INT:
    case KD_CT_MS:
    case KD_CT_S:
    case KD_CT_H: snprintf(buf, len, "%lld..%lld", (long long)k->min, (long long)k->max); break;
    case KD_CT_DOUBLE: snprintf(buf, len, "%g..%g", k->dmin, k->dmax); break;
    case KD_CT_BOOL: snprintf(buf, len, "true, false"); break;
    case KD_CT_ENUM:
    case KD_CT_ENUMI: {
        size_t o = 0;
        for (const char *p = k->choices; *p && o + 3 < len; p++) {
            if (*p == '|') {
                buf[o++] = ',';
                buf[o++] = ' ';
            } else {
                buf[o++] = *p;
            }
        }
        buf[o] = '\0';
        break;
    }
    case KD_CT_STR: break;
    }
    return buf;
}

void kd_config_print_help(const kd_config *cfg, FILE *out)
{
    size_t n;
    const kd_config_key *t = kd_config_table(&n);
    fprintf(out, "Options of %s (each also set by its environment variable):\n", cfg->prog_name);
    for (size_t i = 0; i < n; i++) {
        if (!(t[i].progs & cfg->prog))
            continue;
        char env[128], flag[128], b[256];
        kd_config_env_name(t[i].name, env, sizeof env);
        kd_config_flag_name(t[i].name, flag, sizeof flag);
        bounds(&t[i], b, sizeof b);
        fprintf(out, "  %-28s %-32s %s%s%s%s, default '%s'\n      %s\n", flag, env,
                type_name(t[i].type), *b ? " (" : "", b, *b ? ")" : "", t[i].secret ? "" : t[i].def,
                t[i].help);
    }
    fprintf(out,
            "  --config-table                   print every key as a markdown table\n"
            "  --config-json                    print every key's type and bounds as JSON\n"
            "  --config-dump                    print the effective values (secrets hidden)\n");
}

void kd_config_print_markdown(FILE *out)
{
    size_t n;
    const kd_config_key *t = kd_config_table(&n);
    fprintf(out, "| key | environment | flag | type | default | accepts | programs | meaning |\n");
    fprintf(out, "| --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for (size_t i = 0; i < n; i++) {
        char env[128], flag[128], progs[64], b[256];
        kd_config_env_name(t[i].name, env, sizeof env);
        kd_config_flag_name(t[i].name, flag, sizeof flag);
        fprintf(out, "| `%s` | `%s` | `%s` | %s%s | `%s` | %s | %s | %s |\n", t[i].name, env, flag,
                type_name(t[i].type), t[i].secret ? ", secret" : "", t[i].def,
                bounds(&t[i], b, sizeof b), prog_list(t[i].progs, progs, sizeof progs), t[i].help);
    }
}

/* The JSON array of --config-json. jansson escapes the help texts; keys are kept in table
 * order (JSON_PRESERVE_ORDER) so that the output diffs well. */
static json_t *key_json(const kd_config_key *k)
{
    json_t *o = json_object();
    json_t *progs = json_array();
    json_object_set_new(o, "name", json_string(k->name));
    json_object_set_new(o, "type", json_string(type_names[k->type].json));
    if (k->type == KD_CT_DOUBLE) {
        json_object_set_new(o, "min", json_real(k->dmin));
        json_object_set_new(o, "max", json_real(k->dmax));
    } else if (k->type == KD_CT_INT || k->type == KD_CT_MS || k->type == KD_CT_S ||
               k->type == KD_CT_H) {
        json_object_set_new(o, "min", json_integer(k->min));
        json_object_set_new(o, "max", json_integer(k->max));
    }
    if (k->choices) {
        json_t *c = json_array();
        for (const char *p = k->choices; *p;) {
            size_t n = strcspn(p, "|");
            json_array_append_new(c, json_stringn(p, n));
            p += n + (p[n] == '|');
        }
        json_object_set_new(o, "choices", c);
    }
    if (!k->secret)
        json_object_set_new(o, "default", json_string(k->def));
    for (size_t i = 0; i < KD_NPROGS; i++)
        if (k->progs & prog_names[i].bit)
            json_array_append_new(progs, json_string(prog_names[i].name));
    json_object_set_new(o, "programs", progs);
    json_object_set_new(o, "secret", json_boolean(k->secret));
    json_object_set_new(o, "help", json_string(k->help));
    return o;
}

void kd_config_print_json(FILE *out)
{
    size_t n;
    const kd_config_key *t = kd_config_table(&n);
    json_t *all = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(all, key_json(&t[i]));
    json_dumpf(all, out, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    fputc('\n', out);
    json_decref(all);
}

void kd_config_print_dump(const kd_config *cfg, FILE *out)
{
    size_t n;
    const kd_config_key *t = kd_config_table(&n);
    for (size_t i = 0; i < n; i++)
        if (t[i].progs & cfg->prog)
            fprintf(out, "%s=%s\n", t[i].name,
                    t[i].secret ? (cfg->values[i][0] ? "<set>" : "") : cfg->values[i]);
}

bool kd_config_common_actions(const kd_config *cfg, int *code)
{
    if (cfg->help) {
        kd_config_print_help(cfg, stdout);
        *code = 0;
        return true;
    }
    for (int a = 0; a < cfg->nargs; a++) {
        if (strcmp(cfg->args[a], "--config-table") == 0) {
            kd_config_print_markdown(stdout);
            *code = 0;
            return true;
        }
        if (strcmp(cfg->args[a], "--config-json") == 0) {
            kd_config_print_json(stdout);
            *code = 0;
            return true;
        }
        if (strcmp(cfg->args[a], "--config-dump") == 0) {
            kd_config_print_dump(cfg, stdout);
            *code = 0;
            return true;
        }
    }
    return false;
}
