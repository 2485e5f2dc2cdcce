# shellcheck shell=bash
# jobs.sh: job generators for the integration tests and the demo, against kone-sim's default
# buildings (sim/buildings.json, docs/kone-sim.md). Needs lib.sh's it_job and IT_PREFIX.
#
# building:9990000951 group 1 serves floors 1-11 (areas 1000..11000, rear door at the lobby
# 1010), group 2 serves floors 1 and 11-20; action 2 is a destination call, 4 is disabled,
# 2001/2002 are landing calls up/down; area 9000 is locked in group 1.

# Floors group 1 serves that are not locked (9 is): destinations for good calls.
JOBS_FLOORS=(2 3 4 5 6 7 8 10 11)

# jobs_good N: N destination calls in group 1 from the lobby to floors 2..11 (not 9).
jobs_good() {
    local i
    for ((i = 1; i <= $1; i++)); do
        it_job "good-$i" "{\"v\":1,\"area\":1000,\"action\":2,\"destination\":$((JOBS_FLOORS[i % 9] * 1000))}"
    done
}

# jobs_tracked N: N tracked calls, followed until served.
jobs_tracked() {
    local i
    for ((i = 1; i <= $1; i++)); do
        it_job "tracked-$i" "{\"v\":1,\"area\":$(((i % 5 + 2) * 1000)),\"action\":2,\"destination\":$((JOBS_FLOORS[i % 3 + 6] * 1000)),\"track\":true}"
    done
}

# The rejection table of ../shared/kone/PROTOCOL.md, one job per row that a valid job can
# reach: "name|job fields|expected outcome|expected error code regex|expected message regex".
JOBS_REFUSED_TABLE=(
    'unknown-action|{"area":1000,"action":200,"destination":5000}|rejected|.|^Ignoring call, unknown call action: 200$'
    'undefined-action|{"area":1000,"action":0,"destination":5000}|rejected|.|^Ignoring call, unknown call action: UNDEFINED$'
    'disabled-action|{"area":1000,"action":4,"destination":5000}|rejected|.|^Ignoring call, disabled call action: 4$'
    'invalid-direction|{"area":1000,"action":2002}|rejected|.|INVALID_DIRECTION'
    'same-floor|{"area":3000,"action":2,"destination":3000}|rejected|SAME_SOURCE_AND_DEST_FLOOR|SAME_SOURCE_AND_DEST_FLOOR'
    'same-floor-other-side|{"area":1000,"action":2,"destination":1010}|rejected|SAME_SOURCE_AND_DEST_FLOOR|SAME_SOURCE_AND_DEST_FLOOR'
    'unknown-destination|{"area":1000,"action":2,"destination":99000}|rejected|.|^Ignoring call, unable to resolve destination: area:99000$'
    'no-destination|{"area":1000,"action":2}|rejected|.|^Ignoring call, destination not defined$'
    'unknown-source|{"area":98000,"action":2,"destination":5000}|rejected|.|^Ignoring call, unable to resolve area: area:98000$'
    'unknown-building|{"building_id":"building:9990000999","area":1000,"action":2,"destination":5000}|rejected|404|Building data not found for ID building:9990000999$'
    'group-out-of-service|{"building_id":"building:9990000952","area":1000,"action":2,"destination":3000}|rejected|.|NO_LIFT_AVAILABLE|OSS mode'
    'locked-floor|{"area":1000,"action":2,"destination":9000}|rejected|FLOOR_IS_LOCKED|FLOOR_IS_LOCKED'
    'no-lift-available|{"area":1000,"action":2,"destination":5000,"allowed_lifts":[1002010]}|rejected|.|NO_LIFT_AVAILABLE|OSS mode'
    'site-link-down|{"building_id":"building:9990000952","group_id":"2","area":1000,"action":2,"destination":3000}|unknown|1005|^the call may have been placed'
)

# jobs_refused: one job per row of JOBS_REFUSED_TABLE.
jobs_refused() {
    local row name fields
    for row in "${JOBS_REFUSED_TABLE[@]}"; do
        IFS='|' read -r name fields _ <<<"$row"
        it_job "refused-$name" "$(jq -c '. + {v: 1}' <<<"$fields")"
    done
}
