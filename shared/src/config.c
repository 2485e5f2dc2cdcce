/* config.c: the configuration table, its loader and its typed accessors (see kd_config.h).
 *
 * Why one table for all programs: operators set the same KD_* variables for the worker,
 * the producer and the tools, and the docs are generated from and checked against this
 * one list. A key is added as one row of kd_config_keys.h and nowhere else.
 *
 * Why check everything at load: a bound written at the call site that reads the key is
 * checked only when (and if) that code runs, and the same key ended up with different
 * bounds in different files. Here every key of the running program is parsed once, at
 * start, against the one declaration; the parsed values are kept beside the text so that
 * reading one is an array index.
 */
#include "kd_config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kd_amqp.h"
#include "kd_limits.h"
#include "kd_retry.h"

#define W KD_PROG_WORKER
#define P KD_PROG_PRODUCER
#define S KD_PROG_SIM
#define E KD_PROG_EVENTS

static const kd_config_key kd_keys[KD_CFG_COUNT] = {
#define KD_KEY(id, name_, type_, min_, max_, choices_, def_, progs_, secret_, help_)               \
    [KD_CFG_##id] = {.name = (name_),                                                              \
                     .type = KD_CT_##type_,                                                        \
                     .min = (int64_t)(min_),                                                       \
                     .max = (int64_t)(max_),                                                       \
                     .dmin = (double)(min_),                                                       \
                     .dmax = (double)(max_),                                                       \
                     .choices = (choices_),                                                        \
                     .def = (def_),                                                                \
                     .progs = (progs_),                                                            \
                     .secret = (secret_),                                                          \
                     .help = (help_)},
#include "kd_config_keys.h"
#undef KD_KEY
};

#undef W
#undef P
#undef S
#undef E

#define KD_NKEYS ((size_t)KD_CFG_COUNT)

const kd_config_key *kd_config_table(size_t *n)
{
    *n = KD_NKEYS;
    return kd_keys;
}

int kd_config_find(const char *name)
{
    for (size_t i = 0; i < KD_NKEYS; i++)
        if (strcmp(kd_keys[i].name, name) == 0)
            return (int)i;
    return -1;
}

const char *kd_cfg_name(kd_config_id id)
{
    return kd_keys[id].name;
}

void kd_config_env_name(const char *key, char *buf, size_t len)
{
    size_t o = 0;
    const char *pre = "KD_";
    for (; *pre && o + 1 < len; pre++)
        buf[o++] = *pre;
    for (; *key && o + 1 < len; key++)
        buf[o++] = (*key == '.') ? '_' : (char)toupper((unsigned char)*key);
    buf[o] = '\0';
}

void kd_config_flag_name(const char *key, char *buf, size_t len)
{
    size_t o = 0;
    if (len > 2) {
        buf[o++] = '-';
        buf[o++] = '-';
    }
    for (; *key && o + 1 < len; key++)
        buf[o++] = (*key == '.' || *key == '_') ? '-' : *key;
    buf[o] = '\0';
}

/* ---- parsing a value against its key ---------------------------------------------------- */

/* The index of `v` in "a|b|c", or -1. */
static int choice_index(const char *choices, const char *v, bool any_case)
{
    size_t vl = strlen(v);
    int i = 0;
    for (const char *p = choices; *p; i++) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == vl && (any_case ? strncasecmp(p, v, n) : memcmp(p, v, n)) == 0)
            return i;
        if (!bar)
            break;
        p = bar + 1;
    }
    return -1;
}

/* "a|b|c" as "a, b or c", as the modules' own messages had it. */
static void choices_text(const char *choices, char *buf, size_t len)
{
    size_t o = 0, bars = 0;
    for (const char *p = choices; *p; p++)
        bars += *p == '|';
    for (const char *p = choices; *p && o + 5 < len; p++) {
        if (*p != '|')
            buf[o++] = *p;
        else
            o += (size_t)snprintf(buf + o, len - o, --bars > 0 ? ", " : " or ");
    }
    buf[o] = '\0';
}

/* Parses `v` as key i's type into *num / *dbl. On a bad value, the error names the key and
 * what it accepts, and shows the value only when the key is not secret. */
static int parse_value(int i, const char *v, int64_t *num, double *dbl, kd_err *err)
{
    const kd_config_key *k = &kd_keys[i];
    if (!v) /* kd_config_set(cfg, id, NULL, ...): an application's mistake, not a value */
        return kd_err_set(err, KD_ERR_INVALID, "%s: no value given", k->name);
    char shown[96];
    if (k->secret)
        snprintf(shown, sizeof shown, "a value (hidden: secret)");
    else
        snprintf(shown, sizeof shown, "'%.80s'", v);
    char *end;
    switch (k->type) {
    case KD_CT_STR: return 0;
    case KD_CT_INT:
    case KD_CT_MS:
    case KD_CT_S:
    case KD_CT_H: {
        errno = 0;
        long long n = strtoll(v, &end, 10);
        if (errno || end == v || *end != '\0' || n < k->min || n > k->max)
            return kd_err_set(err, KD_ERR_INVALID, "%s: must be an integer in %lld..%lld, got %s",
                              k->name, (long long)k->min, (long long)k->max, shown);
        *num = n;
        return 0;
    }
    case KD_CT_DOUBLE: {
        errno = 0;
        double d = strtod(v, &end);
        if (errno || end == v || *end != '\0' || !isfinite(d) || d < k->dmin || d > k->dmax)
            return kd_err_set(err, KD_ERR_INVALID, "%s: must be a number in %g..%g, got %s",
                              k->name, k->dmin, k->dmax, shown);
        *dbl = d;
        return 0;
    }
    case KD_CT_BOOL:
        if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes")) {
            *num = 1;
            return 0;
        }
        if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no")) {
            *num = 0;
            return 0;
        }
        return kd_err_set(err, KD_ERR_INVALID, "%s: must be true or false, got %s", k->name, shown);
    case KD_CT_ENUM:
    case KD_CT_ENUMI: {
        int c = choice_index(k->choices, v, k->type == KD_CT_ENUMI);
        if (c < 0) {
            char list[256];
            choices_text(k->choices, list, sizeof list);
            return kd_err_set(err, KD_ERR_INVALID, "%s: must be %s, got %s", k->name, list, shown);
        }
        *num = c;
        return 0;
    }
    }
    return kd_err_set(err, KD_ERR_INVALID, "%s: unknown type", k->name);
}

/* Stores `v` (a copy) as key i's value, parsed; the old value is kept when it does not
 * parse and `check` is set. */
static int store(kd_config *cfg, int i, const char *v, bool check, kd_err *err)
{
    int64_t num = 0;
    double dbl = 0;
    int rc = parse_value(i, v, &num, &dbl, check ? err : NULL);
    if (rc && check)
        return rc;
    if (!v) /* not even kept as text: every reader may assume a string */
        return kd_err_set(err, KD_ERR_INVALID, "%s: no value given", kd_keys[i].name);
    char *dup = strdup(v);
    if (!dup)
        return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
    if (cfg->values[i] && kd_keys[i].secret)
        explicit_bzero(cfg->values[i], strlen(cfg->values[i]));
    free(cfg->values[i]);
    cfg->values[i] = dup;
    if (!rc) {
        cfg->num[i] = num;
        cfg->dbl[i] = dbl;
    }
    return 0;
}

int kd_config_set(kd_config *cfg, kd_config_id id, const char *value, kd_err *err)
{
    if ((unsigned)id >= KD_NKEYS)
        return kd_err_set(err, KD_ERR_INVALID, "kd_config_set: no key %d", (int)id);
    return store(cfg, (int)id, value, true, err);
}

/* ---- loading ------------------------------------------------------------------------------ */

/* Reads a secret file; strips one trailing newline. The path may be named in errors,
 * the content never. */
static int read_secret_file(const char *key, const char *path, char **out, kd_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return kd_err_set(err, KD_ERR_INVALID, "%s: cannot read file %s: %s", key, path,
                          kd_strerror(errno));
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    if (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    if (n > 0 && buf[n - 1] == '\r')
        buf[--n] = '\0';
    *out = strdup(buf);
    explicit_bzero(buf, sizeof buf);
    return *out ? 0 : KD_ERR_NOMEM;
}

static int set_from_file(kd_config *cfg, int i, const char *path, kd_err *err)
{
    char *v = NULL;
    int rc = read_secret_file(kd_keys[i].name, path, &v, err);
    if (rc || !v) /* !v: only with rc set; said for the analyzer */
        return rc ? rc : KD_ERR_NOMEM;
    rc = store(cfg, i, v, false, err);
    explicit_bzero(v, strlen(v));
    free(v);
    return rc;
}

/* Finds the key whose flag is `name` (without "--"); *is_file tells whether it was the
 * -file variant of a secret key. */
static int flag_index(const char *name, size_t nlen, bool *is_file)
{
    char flag[128];
    for (size_t i = 0; i < KD_NKEYS; i++) {
        kd_config_flag_name(kd_keys[i].name, flag, sizeof flag);
        size_t fl = strlen(flag + 2);
        if (fl == nlen && memcmp(flag + 2, name, nlen) == 0) {
            *is_file = false;
            return (int)i;
        }
        if (kd_keys[i].secret && nlen == fl + 5 && memcmp(flag + 2, name, fl) == 0 &&
            memcmp(name + fl, "-file", 5) == 0) {
            *is_file = true;
            return (int)i;
        }
    }
    return -1;
}

/* Defaults, then the environment (and _FILE of secrets). Not checked yet. */
static int load_env(kd_config *cfg, kd_err *err)
{
    int rc = 0;
    for (size_t i = 0; i < KD_NKEYS && !rc; i++) {
        char env[128];
        kd_config_env_name(kd_keys[i].name, env, sizeof env);
        // NOLINTNEXTLINE(concurrency-mt-unsafe): read at start-up, before any thread starts
        const char *v = getenv(env);
        rc = store(cfg, (int)i, v ? v : kd_keys[i].def, false, err);
        if (!rc && kd_keys[i].secret) {
            char envf[160];
            snprintf(envf, sizeof envf, "%s_FILE", env);
            // NOLINTNEXTLINE(concurrency-mt-unsafe): at start-up too, like the line above
            const char *path = getenv(envf);
            if (path && *path)
                rc = set_from_file(cfg, (int)i, path, err);
        }
    }
    return rc;
}

static int add_arg(kd_config *cfg, char *arg, kd_err *err)
{
    if (cfg->nargs >= KD_CONFIG_MAX_ARGS)
        return kd_err_set(err, KD_ERR_INVALID, "too many arguments");
    cfg->args[cfg->nargs++] = arg;
    return 0;
}

static int load_argv(kd_config *cfg, int argc, char **argv, kd_err *err)
{
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            cfg->help = true;
            continue;
        }
        if (kd_config_is_print_option(arg)) {
            /* remembered as positional marker for kd_config_common_actions */
            if (cfg->nargs < KD_CONFIG_MAX_ARGS)
                cfg->args[cfg->nargs++] = argv[a];
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            for (a++; a < argc && cfg->nargs < KD_CONFIG_MAX_ARGS; a++)
                cfg->args[cfg->nargs++] = argv[a];
            break;
        }
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            int rc = add_arg(cfg, argv[a], err);
            if (rc)
                return rc;
            continue;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        bool is_file = false;
        int i = flag_index(name, nlen, &is_file);
        if (i < 0 || !(kd_keys[i].progs & cfg->prog))
            return kd_err_set(err, KD_ERR_INVALID, "%s: unknown option --%.*s (see --help)",
                              cfg->prog_name, (int)nlen, name);
        const char *val;
        if (eq)
            val = eq + 1;
        else if (a + 1 < argc)
            val = argv[++a];
        else
            return kd_err_set(err, KD_ERR_INVALID, "%s: option --%.*s needs a value",
                              cfg->prog_name, (int)nlen, name);
        int rc = is_file ? set_from_file(cfg, i, val, err) : store(cfg, i, val, false, err);
        if (rc)
            return rc;
    }
    return 0;
}

/* Every key of the program against its type and bounds, in table order (so the first bad
 * key is named first). Keys of other programs are not checked: they are not read. */
static int check_all(kd_config *cfg, kd_err *err)
{
    for (size_t i = 0; i < KD_NKEYS; i++) {
        if (!(kd_keys[i].progs & cfg->prog))
            continue;
        int rc = parse_value((int)i, cfg->values[i], &cfg->num[i], &cfg->dbl[i], err);
        if (rc)
            return rc;
    }
    return 0;
}

bool kd_config_is_print_option(const char *arg)
{
    return !strcmp(arg, "--config-table") || !strcmp(arg, "--config-json") ||
           !strcmp(arg, "--config-dump");
}

/* --help, --config-table, --config-json and --config-dump print and exit: they work whatever
 * the values (a dump is how one looks at a bad one). */
static bool printing_only(const kd_config *cfg)
{
    if (cfg->help)
        return true;
    for (int a = 0; a < cfg->nargs; a++)
        if (kd_config_is_print_option(cfg->args[a]))
            return true;
    return false;
}

int kd_config_load(kd_config *cfg, unsigned prog, const char *prog_name, int argc, char **argv,
                   kd_err *err)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->prog = prog;
    cfg->prog_name = prog_name;
    int rc = load_env(cfg, err);
    if (!rc)
        rc = load_argv(cfg, argc, argv, err);
    if (!rc && !printing_only(cfg))
        rc = check_all(cfg, err);
    if (rc == KD_ERR_NOMEM)
        kd_err_set(err, rc, "out of memory");
    if (rc)
        kd_config_free(cfg);
    return rc;
}

void kd_config_free(kd_config *cfg)
{
    for (size_t i = 0; i < KD_NKEYS; i++) {
        if (cfg->values[i] && kd_keys[i].secret)
            explicit_bzero(cfg->values[i], strlen(cfg->values[i]));
        free(cfg->values[i]);
        cfg->values[i] = NULL;
    }
}

/* ---- typed accessors ---------------------------------------------------------------------- */

static const kd_config_key *typed(kd_config_id id, unsigned types)
{
    if ((unsigned)id >= KD_NKEYS || !((1u << kd_keys[id].type) & types)) {
        fprintf(stderr, "kd_config: key %d read with the wrong type (programming error)\n",
                (int)id);
        abort();
    }
    return &kd_keys[id];
}

#define T(x) (1u << KD_CT_##x)

const char *kd_cfg_str(const kd_config *cfg, kd_config_id id)
{
    typed(id, ~0u);
    return cfg->values[id];
}

int64_t kd_cfg_int(const kd_config *cfg, kd_config_id id)
{
    typed(id, T(INT) | T(MS) | T(S) | T(H) | T(ENUM) | T(ENUMI));
    return cfg->num[id];
}

double kd_cfg_double(const kd_config *cfg, kd_config_id id)
{
    typed(id, T(DOUBLE));
    return cfg->dbl[id];
}

bool kd_cfg_bool(const kd_config *cfg, kd_config_id id)
{
    typed(id, T(BOOL));
    return cfg->num[id] != 0;
}

#undef T
