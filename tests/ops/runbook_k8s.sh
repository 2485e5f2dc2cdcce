#!/usr/bin/env bash
# ops.runbook_k8s: the kubectl and helm commands of RUNBOOK.md and docs/**/*.md name what the
# chart really deploys. A runbook followed at 3 a.m. must not name a namespace, Deployment or
# Secret that does not exist: that is how a credential rotation that updates a Secret nobody
# reads takes the service down.
#
# The chart is rendered (helm template, release kone-dispatch) with each environment's values,
# in the namespace scripts/deploy gives it (prod: kone-dispatch; others kone-dispatch-<env>),
# plus the optional Secrets docs/deployment.md tells operators to create (secrets.ledgerCA:
# kone-dispatch-ledger-ca). Every command found in a code block or an inline code span that
# runs kubectl or helm is checked:
#   - namespace (-n/--namespace, after shell variables of the same file are substituted:
#     NS=..., ns=...): the namespace of an environment, or the brokers' namespace the values
#     point at (messaging: amqp.host and kafka.brokers), whose objects are not the chart's;
#   - objects in a chart namespace (deploy/NAME, `get secret NAME`, `annotate scaledobject
#     NAME` ...): an object of that kind and name in that environment's render; pods only as
#     placeholders (<pod>, "$POD"), since their names are generated;
#   - Secrets: `create secret generic NAME --from-file/--from-literal KEY=...` gives every key
#     the chart mounts from NAME (a Secret applied without one breaks the pods at their next
#     start); `-o jsonpath={.data.KEY}` reads a key the chart mounts;
#   - label selectors (-l a=b,c=d) select some object or pod template of the render;
#     containers (-c/--container/--target) exist in a pod of the render;
#   - helm: the release is kone-dispatch, its namespace one of the environments';
#   - procedures: no `kubectl rollout undo` (it drifts from Helm's record: use helm rollback);
#     a `kubectl scale` of the workers comes after the KEDA pause annotation in its file
#     (autoscaling.keda.sh/paused-replicas or /paused), or KEDA scales it back at once.
# Commands for other systems (psql, rabbitmqctl inside `kubectl exec`) are not parsed beyond
# their kubectl part. A command the checker cannot read is a failure, not a skip.
# shellcheck source=lib/chart.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/chart.sh"

cat >"$tmp/optional.yaml" <<'EOF'
secrets:
  ledgerCA: {existingSecret: kone-dispatch-ledger-ca}
EOF
for env in prod staging dev; do
    case $env in
    prod) ns=kone-dispatch ;;
    *) ns=kone-dispatch-$env ;;
    esac
    grep -q "$env) namespace=$ns ;;\|namespace=kone-dispatch-\$env" "$SRC/scripts/deploy" ||
        fail "scripts/deploy no longer puts $env in namespace $ns: update this test"
    "$HELM" template kone-dispatch "$CHART" --namespace "$ns" -f "$CHART/values-$env.yaml" \
        -f "$tmp/optional.yaml" >"$tmp/$ns.yaml" 2> >(grep -v 'found symbolic link' >&2) ||
        fail "helm template failed for $env"
done

KD_RENDER_DIR=$tmp PYTHONPATH="$SRC/tests/ops/lib" "$PY" "$SRC/tests/ops/lib/k8scmds.py" || fails=$((fails + 1))
if ((fails)); then
    echo "runbook_k8s: $fails failure(s)"
    exit 1
fi
echo "runbook_k8s: ok"
