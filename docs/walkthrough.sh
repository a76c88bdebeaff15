#!/usr/bin/env bash
# The README walkthrough as one script: from `make run` to a delivered, fulfilled and
# posted order, with curl only. Run it against a stack started by `procure up`.
set -euo pipefail
TOKEN=${PROCURE_TOKEN:-$(uv run procure token --roles admin)}
RUN=${RUN:-$(date +%s)}            # makes ids unique, so the script can run again
# The services' ports: `<NAME>_PORT` as `procure up` reads them, or its defaults.
QUOTES=${QUOTES_PORT:-8101} INVENTORY=${INVENTORY_PORT:-8102} PURCHASING=${PURCHASING_PORT:-8103}
RECEIVING=${RECEIVING_PORT:-8104} SHIPPING=${SHIPPING_PORT:-8105}
api() { # api METHOD PORT PATH [JSON]: prints the answer; fails on a 4xx or 5xx (curl's status)
  local status=0
  curl -sS --fail-with-body -X "$1" "http://${PROCURE_HOST:-127.0.0.1}:$2$3" \
    -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' ${4:+-d "$4"} || status=$?
  echo
  return "$status"
}
wait_for() { # wait_for "description" command...
  for _ in $(seq 60); do "${@:2}" >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "timed out waiting for $1" >&2; return 1
}
ADDR='{"name":"Acme HQ","line1":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"}'
ME='{"id":"u-olive","name":"Olive Owner","email":"olive@example.com"}'

echo "== inventory: a vendor, a warehouse, a product to buy (over the approval threshold)"
api POST $INVENTORY /vendors "{\"id\":\"v-$RUN\",\"name\":\"Parts Inc\",\"email\":\"sales@parts.example\"}"
api POST $INVENTORY /locations "{\"id\":\"loc-$RUN\",\"name\":\"Main warehouse\",\"address\":$ADDR}"
api POST $INVENTORY /products "{\"id\":\"p-$RUN\",\"sku\":\"LAP-$RUN\",\"name\":\"Laptop 14\",\"is_inventory\":false,
  \"subject_to_procurement\":true,\"serialized\":false,\"unit_cost\":\"900.00\",\"unit_price\":\"1200.00\",\"vendor_id\":\"v-$RUN\"}"

echo "== purchasing: purchases of 1000.00 or more need approval; the purchasing team gets mail"
api PUT $PURCHASING /settings '{"approval_threshold":"1000.00","purchasing_team":["buyers@example.com"]}'

echo "== quotes: an opportunity with a quote item, won with the wizard"
api POST $QUOTES /opportunities "{\"id\":\"opp-$RUN\",\"name\":\"Laptops for Acme\",\"owner\":$ME,
  \"organization\":{\"id\":\"org-acme\",\"name\":\"Acme\",\"address\":$ADDR}}"
wait_for "the product in quotes' catalog" api POST $QUOTES "/opportunities/opp-$RUN/items" "{\"product_id\":\"p-$RUN\",\"quantity\":2}"
ITEM=$(api GET $QUOTES "/opportunities/opp-$RUN" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])')
api POST $QUOTES "/opportunities/opp-$RUN/win" "{\"sales_order\":{\"id\":\"so-$RUN\",\"ship_to\":$ADDR},
  \"items\":[{\"quote_item_id\":\"$ITEM\",\"parent\":{\"kind\":\"ticket\",\"id\":\"t-$RUN\",\"name\":\"Laptop refresh\",
  \"primary_resource\":{\"id\":\"u-rita\",\"name\":\"Rita Resource\",\"email\":\"rita@example.com\"}}}]}"
wait_for "the sales order" api GET $QUOTES "/sales-orders/so-$RUN"
CHARGE=$(api GET $QUOTES "/sales-orders/so-$RUN" | python3 -c 'import json,sys; print(json.load(sys.stdin)["charges"][0]["id"])')

echo "== purchasing: approve, then order it from the Purchasing & Fulfillment queue"
pending() { api GET $PURCHASING "/approvals?status=Pending" | python3 -c "import json,sys; print(next(a['id'] for a in json.load(sys.stdin)['items'] if a['charge_id']=='$CHARGE'))"; }
wait_for "the approval" pending
api POST $PURCHASING "/approvals/$(pending)/approve" '{"note":"ok"}'
queued() { api GET $PURCHASING /fulfillment | python3 -c "import json,sys; print(next(i['item_id'] for i in json.load(sys.stdin)['items'] if i['charge_id']=='$CHARGE'))"; }
wait_for "the queue item" queued
PO=$(api POST $PURCHASING /purchase-orders "{\"vendor_id\":\"v-$RUN\",\"ship_to\":{\"kind\":\"location\",\"location_id\":\"loc-$RUN\"},
  \"items\":[{\"item_id\":\"$(queued)\"}]}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
api POST $PURCHASING "/purchase-orders/$PO/submit"

echo "== receiving: one unit now, the other later"
line() { api GET $RECEIVING "/purchase-orders/$PO" | python3 -c 'import json,sys; print(json.load(sys.stdin)["lines"][0]["line_id"])'; }
wait_for "the PO on the Receiving page" line
api POST $RECEIVING "/purchase-orders/$PO/receipts" "{\"lines\":[{\"line_id\":\"$(line)\",\"quantity\":1,\"location_id\":\"loc-$RUN\"}]}"
api POST $RECEIVING "/purchase-orders/$PO/receipts" "{\"lines\":[{\"line_id\":\"$(line)\",\"quantity\":1,\"location_id\":\"loc-$RUN\"}]}"

echo "== shipping: deliver what is ready, with a packing list"
ready() { api GET $SHIPPING /delivery/ready | python3 -c "import json,sys; i=[i for i in json.load(sys.stdin)['items'] if i['charge_id']=='$CHARGE' and i['quantity']==2]; print(i[0]['item_id'])"; }
wait_for "2 units on the Ready tab" ready
READY=$(ready)
api POST $SHIPPING /packing-lists "{\"item_ids\":[\"$READY\"]}"
api POST $SHIPPING /deliveries "{\"items\":[{\"item_id\":\"$READY\"}]}"

echo "== quotes: can_fulfill, a person sets Fulfilled, billing posts the charge"
fulfillable() { api GET $QUOTES "/sales-orders/so-$RUN" | python3 -c 'import json,sys; assert json.load(sys.stdin)["can_fulfill"]'; }
wait_for "can_fulfill" fulfillable
api POST $QUOTES "/sales-orders/so-$RUN/fulfill"
api POST $QUOTES "/charges/$CHARGE/post"
api GET $QUOTES "/sales-orders/so-$RUN" | python3 -c '
import json, sys
so = json.load(sys.stdin)
print("sales order", so["id"], so["status"], "can_fulfill:", so["can_fulfill"])
for c in so["charges"]:
    print(" charge", c["id"], {k: v for k, v in c["units"].items() if v}, "posted:", c["posted"])
for t in so["timeline"]:
    print(" ", t["time"][11:19], t["type"].removeprefix("procurement."), "-", t["summary"])'
