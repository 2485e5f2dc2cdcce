/**
 * @file kd_config.h
 * @brief kd_config: one typed table of every configuration key, for every program.
 *
 * A key "amqp.host" is set, in rising precedence, by its default, by the environment
 * variable KD_AMQP_HOST, and by the flag --amqp-host=VALUE (or --amqp-host VALUE).
 * Secret keys also accept KD_<NAME>_FILE / --&lt;name&gt;-file=PATH, whose file content (one
 * trailing newline stripped) becomes the value: that is how Kubernetes Secrets arrive.
 *
 * The table is kd_config_keys.h: each key's type, bounds, default, programs, secrecy and
 * help (modelled on librdkafka's property table). kd_config_load() checks every key of the
 * running program against it, so a value of the wrong type or out of bounds stops the
 * program at start with the key and its bounds named (a secret's value is never shown).
 * Callers then read typed values by id (kd_cfg_int(cfg, KD_CFG_WORKER_INFLIGHT)), which
 * cannot fail: there are no bounds and no key names left at the call sites.
 * docs/configuration.md is checked against the table by a test (kone-worker
 * --config-table prints the table as the markdown the docs hold); the Helm chart's schema is
 * generated from --config-json.
 */
#ifndef KD_CONFIG_H
#define KD_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "kd_err.h"

/** Programs a key applies to (bit mask). */
enum {
    KD_PROG_WORKER = 1 << 0,   /**< kone-worker */
    KD_PROG_PRODUCER = 1 << 1, /**< kone-producer and applications of the producer API */
    KD_PROG_SIM = 1 << 2,      /**< kone-sim */
    KD_PROG_EVENTS = 1 << 3,   /**< kone-events */
};

/** Most WebSocket connections of the worker's KONE pool (kone.connections). */
#define KD_CONFIG_KONE_MAX_CONNECTIONS 16
/** Most verdicts a building's breaker window holds (kone.breaker_window_calls). */
#define KD_CONFIG_KONE_BREAKER_RING 64

/** A key's type: how its text is checked and which accessor reads it. */
typedef enum kd_config_type {
    KD_CT_STR,    /**< any text (lists are parsed by the module that reads them): kd_cfg_str */
    KD_CT_INT,    /**< integer in [min, max]: kd_cfg_int */
    KD_CT_DOUBLE, /**< number in [dmin, dmax]: kd_cfg_double */
    KD_CT_BOOL,   /**< true/false, 1/0, yes/no: kd_cfg_bool */
    KD_CT_ENUM,   /**< one of choices: kd_cfg_str (the text) or kd_cfg_int (its index) */
    KD_CT_ENUMI,  /**< as KD_CT_ENUM, in any case (librdkafka's enums, whose words it takes so) */
    KD_CT_MS,     /**< duration, integer milliseconds in [min, max]: kd_cfg_int */
    KD_CT_S,      /**< duration, integer seconds: kd_cfg_int */
    KD_CT_H,      /**< duration, integer hours: kd_cfg_int */
} kd_config_type;

/** Key ids: KD_CFG_AMQP_HOST ... in table order, then KD_CFG_COUNT. */
typedef enum kd_config_id {
/** One id per row of kd_config_keys.h: KD_CFG_ and the row's ID. */
#define KD_KEY(id, name, type, min, max, choices, def, progs, secret, help) KD_CFG_##id,
#include "kd_config_keys.h"
#undef KD_KEY
    KD_CFG_COUNT /**< the number of keys */
} kd_config_id;

/** One configuration key: a row of the table docs/configuration.md is generated from. */
typedef struct kd_config_key {
    const char *name;    /**< "amqp.host" */
    kd_config_type type; /**< KD_CT_* */
    int64_t min;         /**< lowest value of integer and duration keys */
    int64_t max;         /**< highest value of integer and duration keys */
    double dmin;         /**< lowest value of KD_CT_DOUBLE keys */
    double dmax;         /**< highest value of KD_CT_DOUBLE keys */
    const char *choices; /**< "a|b|c" for KD_CT_ENUM, else NULL */
    const char *def;     /**< default value as text ("" for none) */
    unsigned progs;      /**< KD_PROG_* mask */
    bool secret;         /**< never printed; accepts _FILE */
    const char *help;    /**< one line, for --help and the docs */
} kd_config_key;

/** At most this many positional arguments are kept. */
#define KD_CONFIG_MAX_ARGS 64

/** A program's configuration: one value per key, from defaults, environment and flags. */
typedef struct kd_config {
    unsigned prog;                  /**< KD_PROG_* of the running program */
    const char *prog_name;          /**< its name, for messages */
    char *values[KD_CFG_COUNT];     /**< the text of each key, heap strings */
    int64_t num[KD_CFG_COUNT];      /**< parsed integers, durations, bools, enum indexes */
    double dbl[KD_CFG_COUNT];       /**< parsed KD_CT_DOUBLE values */
    int nargs;                      /**< positional arguments left over */
    char *args[KD_CONFIG_MAX_ARGS]; /**< the positional arguments */
    bool help;                      /**< --help was given */
} kd_config;

/** The table of every key, indexed by kd_config_id; *n gets its length (KD_CFG_COUNT). */
const kd_config_key *kd_config_table(size_t *n);
/** The id of the key named `name` ("amqp.host"), or -1. For tools and tests; product code
 * names keys by id. */
int kd_config_find(const char *name);

/** Loads defaults, environment and argv, then checks every key of `prog` against its type
 * and bounds. Unknown flags and flags of keys that do not apply to this program are errors.
 * Returns 0 or KD_ERR_INVALID (err names the key and what it accepts). */
int kd_config_load(kd_config *cfg, unsigned prog, const char *prog_name, int argc, char **argv,
                   kd_err *err);
/** Frees the values (the struct itself is the caller's). */
void kd_config_free(kd_config *cfg);

/** Sets a value programmatically (tests, tools, derived values), checked as at load:
 * KD_ERR_INVALID (and the value left as it was) when it does not fit the key's type. */
int kd_config_set(kd_config *cfg, kd_config_id id, const char *value, kd_err *err);

/* Typed accessors. The value was checked at load; asking a key for a type it does not have
 * is a programming error, caught by tests: it abort()s. */
const char *kd_cfg_str(const kd_config *cfg, kd_config_id id); /**< any key, as text */
int64_t kd_cfg_int(const kd_config *cfg, kd_config_id id);     /**< INT, MS, S, H, ENUM index */
double kd_cfg_double(const kd_config *cfg, kd_config_id id);   /**< DOUBLE */
bool kd_cfg_bool(const kd_config *cfg, kd_config_id id);       /**< BOOL */
/** The key's name, for messages ("amqp.host"). */
const char *kd_cfg_name(kd_config_id id);

void kd_config_env_name(const char *key, char *buf, size_t len);  /**< KD_AMQP_HOST */
void kd_config_flag_name(const char *key, char *buf, size_t len); /**< --amqp-host */

/** Prints --help: the program's keys, their flags, environment variables, types and defaults. */
void kd_config_print_help(const kd_config *cfg, FILE *out);
void kd_config_print_markdown(FILE *out); /**< the table of docs/configuration.md */
/** Prints --config-json: the whole table as a JSON array, one object a key (name, type, min,
 * max, choices, default, programs, secret, help), for tools: the chart's values.schema.json
 * is generated from it (tests/ops/chart_schema.sh). A secret's default is never printed. */
void kd_config_print_json(FILE *out);
/** True for the options that print and exit (--config-table, --config-json, --config-dump). */
bool kd_config_is_print_option(const char *arg);
/** Prints --config-dump: key=value for the program's keys, secrets as "<set>" or "". */
void kd_config_print_dump(const kd_config *cfg, FILE *out);

/** Handles the options every program shares: --help, --config-table, --config-json,
 * --config-dump. Returns
 * true when the program should exit (with *code) after it. */
bool kd_config_common_actions(const kd_config *cfg, int *code);

#endif
