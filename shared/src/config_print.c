/* config_print.c: what the configuration table prints (see kd_config.h): --help,
 * --config-dump and --config-table (the markdown of docs/configuration.md).
 *
 * All three are generated from the table (kd_config_keys.h) so that they cannot disagree
 * with what the loader accepts. Secret values are never printed: --help shows no default
 * for them and --config-dump shows "<set>" or nothing.
 */
#include "kd_config.h"

#include <string.h>

static const char *prog_list(unsigned progs, char *buf, size_t len)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {
        {KD_PROG_WORKER, "worker"},
        {KD_PROG_PRODUCER, "producer"},
        {KD_PROG_SIM, "sim"},
        {KD_PROG_EVENTS, "events"},
    };
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!(progs & names[i].bit))
            continue;
        if (buf[0])
            strncat(buf, ", ", len - strlen(buf) - 1);
        strncat(buf, names[i].name, len - strlen(buf) - 1);
    }
    return buf;
}

static const char *type_name(kd_config_type t)
{
    switch (t) {
    case KD_CT_STR: return "string";
    case KD_CT_INT: return "integer";
    case KD_CT_DOUBLE: return "number";
    case KD_CT_BOOL: return "bool";
    case KD_CT_ENUM: return "enum";
    case KD_CT_ENUMI: return "enum (any case)";
    case KD_CT_MS: return "duration (ms)";
    case KD_CT_S: return "duration (s)";
    case KD_CT_H: return "duration (h)";
    }
    return "?";
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
        if (strcmp(cfg->args[a], "--config-dump") == 0) {
            kd_config_print_dump(cfg, stdout);
            *code = 0;
            return true;
        }
    }
    return false;
}
