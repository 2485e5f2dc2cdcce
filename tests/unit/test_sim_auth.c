/* test_sim_auth: kone-sim's token endpoint and scope checks, as pure functions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"

static const char *clients_json =
    "[{\"client_id\":\"kd-dev\",\"client_secret\":\"s3cret\",\"scopes\":"
    "[\"application/inventory\",\"callgiving/building:9990000951\","
    "\"callgiving/building:9990000952\",\"robotcall/building:9990000951\"]},"
    " {\"client_id\":\"annex\",\"client_secret\":\"other\",\"scopes\":"
    "[\"callgiving/building:9990000952\"]}]";

/* "Basic base64(kd-dev:s3cret)" and friends */
#define DEV_BASIC "Basic a2QtZGV2OnMzY3JldA=="
#define DEV_WRONG "Basic a2QtZGV2Ondyb25n" /* kd-dev:wrong */

static int setup(void **state)
{
    static sim_auth a;
    json_error_t je;
    json_t *doc = json_loads(clients_json, 0, &je);
    assert_non_null(doc);
    assert_int_equal(sim_auth_from_json(&a, doc, 3600, NULL), 0);
    json_decref(doc);
    *state = &a;
    return 0;
}

static int teardown(void **state)
{
    sim_auth_free(*state);
    return 0;
}

static int request(sim_auth *a, const char *authz, const char *body, int64_t now, json_t **out)
{
    return sim_auth_token_request(a, authz, body, strlen(body), now, out);
}

static void test_token_all_scopes(void **state)
{
    sim_auth *a = *state;
    json_t *ans;
    assert_int_equal(request(a, DEV_BASIC, "grant_type=client_credentials", 1000, &ans), 200);
    const char *tok = json_string_value(json_object_get(ans, "access_token"));
    assert_non_null(tok);
    assert_true(strlen(tok) >= 32);
    assert_string_equal(json_string_value(json_object_get(ans, "token_type")), "Bearer");
    assert_int_equal(json_integer_value(json_object_get(ans, "expires_in")), 3600);
    assert_non_null(
        strstr(json_string_value(json_object_get(ans, "scope")), "callgiving/building:9990000952"));
    const sim_token *t = sim_auth_lookup(a, tok, 2000);
    assert_non_null(t);
    assert_string_equal(t->client_id, "kd-dev");
    assert_int_equal(t->scopes.n, 4);
    /* expiry */
    assert_null(sim_auth_lookup(a, tok, 1000 + 3600 * 1000));
    char bearer[128];
    snprintf(bearer, sizeof bearer, "Bearer %s", tok);
    assert_non_null(sim_auth_bearer(a, bearer, 2000));
    assert_null(sim_auth_bearer(a, "Bearer nope", 2000));
    assert_null(sim_auth_lookup(a, "x", 2000));
    json_decref(ans);
}

static void test_token_bad_credentials(void **state)
{
    sim_auth *a = *state;
    json_t *ans;
    assert_int_equal(request(a, DEV_WRONG, "grant_type=client_credentials", 0, &ans), 401);
    assert_string_equal(json_string_value(json_object_get(ans, "error")), "invalid_client");
    json_decref(ans);
    assert_int_equal(request(a, NULL, "grant_type=client_credentials", 0, &ans), 401);
    json_decref(ans);
    assert_int_equal(request(a, "Basic !!!!", "grant_type=client_credentials", 0, &ans), 401);
    json_decref(ans);
    assert_int_equal(request(a, "Bearer abc", "grant_type=client_credentials", 0, &ans), 401);
    json_decref(ans);
    /* credentials in the body (RFC 6749 2.3.1) */
    assert_int_equal(request(a, NULL,
                             "grant_type=client_credentials&client_id=kd-dev&client_secret=s3cret",
                             0, &ans),
                     200);
    json_decref(ans);
}

static void test_token_grant_and_scopes(void **state)
{
    sim_auth *a = *state;
    json_t *ans;
    assert_int_equal(request(a, DEV_BASIC, "grant_type=password", 0, &ans), 400);
    assert_string_equal(json_string_value(json_object_get(ans, "error")), "unsupported_grant_type");
    json_decref(ans);
    /* a subset, form-encoded with + and %2F */
    assert_int_equal(request(a, DEV_BASIC,
                             "grant_type=client_credentials&scope=application%2Finventory+"
                             "callgiving/building:9990000951",
                             0, &ans),
                     200);
    assert_string_equal(json_string_value(json_object_get(ans, "scope")),
                        "application/inventory callgiving/building:9990000951");
    json_decref(ans);
    /* not the client's */
    assert_int_equal(
        request(a, DEV_BASIC, "grant_type=client_credentials&scope=callgiving/building:1", 0, &ans),
        400);
    assert_string_equal(json_string_value(json_object_get(ans, "error")), "invalid_scope");
    json_decref(ans);
    /* a group of a building the client has */
    assert_int_equal(request(a, DEV_BASIC,
                             "grant_type=client_credentials&scope=callgiving/group:9990000951:2", 0,
                             &ans),
                     200);
    const sim_token *t =
        sim_auth_lookup(a, json_string_value(json_object_get(ans, "access_token")), 1);
    assert_true(sim_scopes_allow_group(&t->scopes, "building:9990000951", "2"));
    assert_false(sim_scopes_allow_group(&t->scopes, "building:9990000951", "1"));
    assert_true(sim_scopes_allow_building(&t->scopes, "building:9990000951"));
    assert_false(sim_scopes_allow_building(&t->scopes, "building:9990000952"));
    assert_false(sim_scopes_has(&t->scopes, "application/inventory"));
    json_decref(ans);
    /* wildcard: every callgiving scope of the client */
    assert_int_equal(
        request(a, DEV_BASIC, "grant_type=client_credentials&scope=callgiving/*", 0, &ans), 200);
    assert_string_equal(json_string_value(json_object_get(ans, "scope")),
                        "callgiving/building:9990000951 callgiving/building:9990000952");
    json_decref(ans);
    /* the annex client may not have 951 */
    assert_int_equal(request(a, "Basic YW5uZXg6b3RoZXI=",
                             "grant_type=client_credentials&scope=callgiving/building:9990000951",
                             0, &ans),
                     400);
    json_decref(ans);
}

static void test_scope_matching(void **state)
{
    (void)state;
    sim_scopes s = {0};
    snprintf(s.s[s.n++], SIM_SCOPE_MAX, "callgiving/building:9990000951");
    snprintf(s.s[s.n++], SIM_SCOPE_MAX, "robotcall/group:9990000952:1");
    assert_true(sim_scopes_allow_group(&s, "building:9990000951", "7"));
    assert_true(sim_scopes_allow_group(&s, "building:9990000952", "1"));
    assert_false(sim_scopes_allow_group(&s, "building:9990000952", "2"));
    assert_false(sim_scopes_allow_group(&s, "building:999000095", "1")); /* prefix only */
    assert_false(sim_scopes_allow_building(&s, "building:99900009511"));
    assert_false(sim_scopes_allow_building(&s, "9990000951"));
}

static void test_form(void **state)
{
    (void)state;
    char out[64];
    const char *body = "a=1&scope=x%20y+z&empty=&bad=%zz";
    assert_int_equal(sim_form_get(body, strlen(body), "scope", out, sizeof out), 0);
    assert_string_equal(out, "x y z");
    assert_int_equal(sim_form_get(body, strlen(body), "empty", out, sizeof out), 0);
    assert_string_equal(out, "");
    assert_int_equal(sim_form_get(body, strlen(body), "bad", out, sizeof out), 0);
    assert_string_equal(out, "%zz");
    assert_int_equal(sim_form_get(body, strlen(body), "missing", out, sizeof out), -1);
    assert_int_equal(sim_form_get(body, strlen(body), "scope", out, 3), -1); /* too long */
}

static void test_bad_clients_file(void **state)
{
    (void)state;
    sim_auth a;
    kd_err err = {0};
    json_t *doc = json_loads("[{\"client_id\":\"x\"}]", 0, NULL);
    assert_int_not_equal(sim_auth_from_json(&a, doc, 10, &err), 0);
    assert_non_null(strstr(err.msg, "client_secret"));
    json_decref(doc);
    doc = json_loads("[{\"client_id\":\"x\",\"client_secret\":\"y\",\"scopes\":[1]}]", 0, NULL);
    assert_int_not_equal(sim_auth_from_json(&a, doc, 10, &err), 0);
    assert_null(strstr(err.msg, "\"y\"")); /* the secret is never in a message */
    json_decref(doc);
}

/* Two secrets for one client (rotation): both get tokens; a reload that leaves only the new
 * one refuses the old and keeps the tokens already issued; a bad file changes nothing. */
static void test_two_secrets_and_reload(void **state)
{
    (void)state;
    char path[] = "/tmp/kd-test-sim-clients.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("[{\"client_id\":\"kd-dev\",\"client_secrets\":[\"s3cret\",\"wrong\"],"
          "\"scopes\":[\"callgiving/building:9990000951\"]}]",
          f);
    fclose(f);
    sim_auth a;
    kd_err err = {0};
    assert_int_equal(sim_auth_load(&a, path, 60, &err), 0);
    json_t *ans;
    assert_int_equal(request(&a, DEV_BASIC, "grant_type=client_credentials", 1000, &ans), 200);
    char old_tok[SIM_TOKEN_LEN + 1];
    snprintf(old_tok, sizeof old_tok, "%s",
             json_string_value(json_object_get(ans, "access_token")));
    json_decref(ans);
    assert_int_equal(request(&a, DEV_WRONG, "grant_type=client_credentials", 1000, &ans), 200);
    json_decref(ans);

    /* revoke s3cret: only "wrong" stays */
    f = fopen(path, "w");
    fputs("[{\"client_id\":\"kd-dev\",\"client_secrets\":[\"wrong\"],"
          "\"scopes\":[\"callgiving/building:9990000951\"]}]",
          f);
    fclose(f);
    assert_int_equal(sim_auth_reload(&a, path, &err), 0);
    assert_int_equal(request(&a, DEV_BASIC, "grant_type=client_credentials", 2000, &ans), 401);
    json_decref(ans);
    assert_int_equal(request(&a, DEV_WRONG, "grant_type=client_credentials", 2000, &ans), 200);
    json_decref(ans);
    assert_non_null(sim_auth_lookup(&a, old_tok, 3000)); /* issued before: still valid */

    /* a broken file, three secrets, or both forms at once: refused, the clients stay */
    const char *bad[] = {
        "[{\"client_id\":\"kd-dev\"",
        "[{\"client_id\":\"kd-dev\",\"client_secrets\":[\"a\",\"b\",\"c\"],\"scopes\":[]}]",
        "[{\"client_id\":\"kd-dev\",\"client_secrets\":[],\"scopes\":[]}]",
        "[{\"client_id\":\"kd-dev\",\"client_secret\":\"a\",\"client_secrets\":[\"b\"],"
        "\"scopes\":[]}]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        f = fopen(path, "w");
        fputs(bad[i], f);
        fclose(f);
        assert_int_not_equal(sim_auth_reload(&a, path, &err), 0);
        assert_int_equal(request(&a, DEV_WRONG, "grant_type=client_credentials", 2000, &ans), 200);
        json_decref(ans);
    }
    unlink(path);
    sim_auth_free(&a);
}

/* The bench's scale world (issue 17): a client allowed in 1,000 buildings gets a token for all
 * of them, and the token lets it call the last one; one scope more than the cap is refused. */
static void test_thousand_buildings(void **state)
{
    (void)state;
    json_t *scopes = json_array();
    json_array_append_new(scopes, json_string("application/inventory"));
    char s[64];
    for (int i = 0; i < 1000; i++) {
        snprintf(s, sizeof s, "callgiving/building:%lld", 9990100000LL + i);
        json_array_append_new(scopes, json_string(s));
    }
    json_t *doc = json_pack("[{s:s,s:s,s:O}]", "client_id", "kd-dev", "client_secret", "s3cret",
                            "scopes", scopes);
    sim_auth a;
    assert_int_equal(sim_auth_from_json(&a, doc, 3600, NULL), 0);
    json_t *ans;
    assert_int_equal(request(&a, DEV_BASIC, "grant_type=client_credentials", 1000, &ans), 200);
    const sim_token *t =
        sim_auth_lookup(&a, json_string_value(json_object_get(ans, "access_token")), 1000);
    assert_non_null(t);
    assert_true(sim_scopes_allow_building(&t->scopes, "building:9990100999"));
    assert_false(sim_scopes_allow_building(&t->scopes, "building:9990101000"));
    assert_non_null(
        strstr(json_string_value(json_object_get(ans, "scope")), "callgiving/building:9990100999"));
    json_decref(ans);
    sim_auth_free(&a);
    json_decref(doc);
    for (int i = 1000; json_array_size(scopes) <= SIM_MAX_SCOPES; i++) {
        snprintf(s, sizeof s, "callgiving/building:%lld", 9990100000LL + i);
        json_array_append_new(scopes, json_string(s));
    }
    doc = json_pack("[{s:s,s:s,s:O}]", "client_id", "kd-dev", "client_secret", "s3cret", "scopes",
                    scopes);
    kd_err err = {0};
    assert_int_not_equal(sim_auth_from_json(&a, doc, 3600, &err), 0);
    assert_non_null(strstr(err.msg, "at most"));
    json_decref(doc);
    json_decref(scopes);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_token_all_scopes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_bad_credentials, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_grant_and_scopes, setup, teardown),
        cmocka_unit_test(test_scope_matching),
        cmocka_unit_test(test_form),
        cmocka_unit_test(test_bad_clients_file),
        cmocka_unit_test(test_two_secrets_and_reload),
        cmocka_unit_test(test_thousand_buildings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
