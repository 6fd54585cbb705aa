"""Two sandboxes started with the same seed and date serve the same data, byte for byte.

Usage: same_data.py READY_JSON_A READY_JSON_B
"""

import json
import sys

import requests


def salesforce_dump(creds):
    headers = {"Authorization": f"Bearer {creds['access_token']}"}
    version = creds.get("api_version", "62.0").lstrip("v")
    dump = {}
    for query in [
        "SELECT Id, Name, NPI__c, Type, OwnerId, SystemModstamp FROM Account ORDER BY Id",
        "SELECT Id, AccountId, LastName, Email, SystemModstamp FROM Contact ORDER BY Id",
        "SELECT Id, Inquiry_Id__c, StageName, AccountId, SystemModstamp FROM Opportunity ORDER BY Id",
        "SELECT Id, Subject, WhatId, SystemModstamp FROM Task ORDER BY Id",
        "SELECT Id, Subject, WhatId, SystemModstamp FROM Event ORDER BY Id",
    ]:
        records, url, params = [], f"{creds['instance_url']}/services/data/v{version}/query", {"q": query}
        while url:
            page = requests.get(url, params=params, headers=headers).json()
            records += [{k: v for k, v in r.items() if k != "attributes"} for r in page["records"]]
            url = creds["instance_url"] + page["nextRecordsUrl"] if not page["done"] else None
            params = None
        dump[query] = records
    return dump


def hubspot_dump(creds):
    headers = {"Authorization": f"Bearer {creds['private_app_token']}"}
    dump = {}
    for object_type in ["companies", "contacts", "deals", "calls", "meetings", "emails", "notes"]:
        records, after = [], None
        while True:
            params = {"limit": 100, **({"after": after} if after else {})}
            page = requests.get(f"{creds['base_url']}/crm/v3/objects/{object_type}", params=params, headers=headers).json()
            records += [{"id": r["id"], "properties": r["properties"], "updatedAt": r["updatedAt"]} for r in page["results"]]
            after = page.get("paging", {}).get("next", {}).get("after")
            if not after:
                break
        dump[object_type] = records
    return dump


def main():
    a = json.loads(open(sys.argv[1]).read())
    b = json.loads(open(sys.argv[2]).read())
    for name, dump in [("salesforce", salesforce_dump), ("hubspot", hubspot_dump)]:
        left = json.dumps(dump(a[name]), sort_keys=True).encode()
        right = json.dumps(dump(b[name]), sort_keys=True).encode()
        if left != right:
            raise AssertionError(f"{name}: the two sandboxes serve different data ({len(left)} vs {len(right)} bytes)")
        print(f"ok {name}: identical data ({len(left)} bytes)")


if __name__ == "__main__":
    main()
