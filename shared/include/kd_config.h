/**
 * @file kd_config.h
 * @brief kd_config: one table of every configuration key, for every program.
 *
 * A key "amqp.host" is set, in rising precedence, by its default, by the environment
 * variable KD_AMQP_HOST, and by the flag --amqp-host=VALUE (or --amqp-host VALUE).
 * Secret keys also accept KD_<NAME>_FILE / --&lt;name&gt;-file=PATH, whose file content (one
 * trailing newline stripped) becomes the value: that is how Kubernetes Secrets arrive.
 * The table lives in config.c; docs/configuration.md is checked against it by a test
 * (kone-worker --config-table prints the table as the markdown the docs hold).
 * Secret values are never printed: --config-dump shows "<set>" for them.
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

/** One configuration key: a row of the table docs/configuration.md is generated from. */
typedef struct kd_config_key {
    const char *name; /**< "amqp.host" */
    const char *def;  /**< default value as text ("" for none) */
    unsigned progs;   /**< KD_PROG_* mask */
    bool secret;      /**< never printed; accepts _FILE */
    const char *help; /**< one line, for --help and the docs */
} kd_config_key;

/** At most this many positional arguments are kept. */
#define KD_CONFIG_MAX_ARGS 64

/** A program's configuration: one value per key, from defaults, environment and flags. */
typedef struct kd_config {
    unsigned prog;                  /**< KD_PROG_* of the running program */
    const char *prog_name;          /**< its name, for messages */
    char **values;                  /**< one per table row, heap strings */
    int nargs;                      /**< positional arguments left over */
    char *args[KD_CONFIG_MAX_ARGS]; /**< the positional arguments */
    bool help;                      /**< --help was given */
} kd_config;

/** The table of every key; *n gets its length. */
const kd_config_key *kd_config_table(size_t *n);

/** Loads defaults, environment and argv. Unknown flags and flags of keys that do not
 * apply to this program are errors. Returns 0 or KD_ERR_INVALID. */
int kd_config_load(kd_config *cfg, unsigned prog, const char *prog_name, int argc, char **argv,
                   kd_err *err);
/** Frees the values (the struct itself is the caller's). */
void kd_config_free(kd_config *cfg);

/** Getters abort() on an unknown key name: that is a programming error, caught by tests. */
const char *kd_config_get(const kd_config *cfg, const char *key);
/** Parse helpers return KD_ERR_INVALID naming the key when the text is not a number/bool. */
int kd_config_int(const kd_config *cfg, const char *key, int64_t min, int64_t max, int64_t *out,
                  kd_err *err);
/** As kd_config_int() for a floating-point value in [min, max]. */
int kd_config_double(const kd_config *cfg, const char *key, double min, double max, double *out,
                     kd_err *err);
/** Reads true/false (also 1/0, yes/no) into *out. */
int kd_config_bool(const kd_config *cfg, const char *key, bool *out, kd_err *err);
/** Sets a value programmatically (tests, derived defaults). */
int kd_config_set(kd_config *cfg, const char *key, const char *value);

void kd_config_env_name(const char *key, char *buf, size_t len);  /**< KD_AMQP_HOST */
void kd_config_flag_name(const char *key, char *buf, size_t len); /**< --amqp-host */

/** Prints --help: the program's keys, their flags, environment variables and defaults. */
void kd_config_print_help(const kd_config *cfg, FILE *out);
void kd_config_print_markdown(FILE *out); /**< the table of docs/configuration.md */

/** Handles the options every program shares: --help, --config-table. Returns true when
 * the program should exit (with *code) after it. */
bool kd_config_common_actions(const kd_config *cfg, int *code);

#endif
