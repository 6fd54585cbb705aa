"""Conformance of refbridge's CRM sandboxes, through the official Python clients, unchanged.

Usage: conformance.py READY_JSON JWT_PRIVATE_KEY_PEM
READY_JSON is the line `refbridge sandbox` prints when it is ready. Every check prints `ok <name>`;
the first failure raises with what was expected and what came back.
"""

import datetime
import json
import re
import sys
import time
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceResourceNotFound,
)
from hubspot import HubSpot
from hubspot.crm.objects import (
    BatchInputSimplePublicObjectBatchInputForCreate,
    BatchInputSimplePublicObjectBatchInputUpsert,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInputForCreate,
    SimplePublicObjectBatchInputUpsert,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.objects.exceptions import ApiException as ObjectsApiException
from hubspot.crm.properties import PropertyCreate


def check(name, condition, detail=""):
    if not condition:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok {name}")


class RewriteToSandbox(HTTPAdapter):
    """simple-salesforce always builds https:// URLs (and logs in at login.salesforce.com):
    send them to the sandbox's plain-http loopback address instead."""

    def __init__(self, target):
        super().__init__()
        self.target = urlsplit(target)

    def send(self, request, **kwargs):
        parts = urlsplit(request.url)
        request.url = urlunsplit((self.target.scheme, self.target.netloc, parts.path, parts.query, parts.fragment))
        return super().send(request, **kwargs)


def salesforce_session(instance_url):
    session = requests.Session()
    netloc = urlsplit(instance_url).netloc
    adapter = RewriteToSandbox(instance_url)
    session.mount(f"https://{netloc}", adapter)
    session.mount("https://login.salesforce.com", adapter)
    return session


def salesforce_checks(creds, private_key_pem):
    instance_url = creds["instance_url"]
    version = creds.get("api_version", "62.0").lstrip("v")
    session = salesforce_session(instance_url)
    sf = Salesforce(instance_url=instance_url, session_id=creds["access_token"], session=session, version=version)

    total = sf.query("SELECT COUNT() FROM Account")["totalSize"]
    accounts = sf.query_all("SELECT Id, Name, NPI__c, Type FROM Account")
    check("salesforce query_all returns every account", len(accounts["records"]) == total > 0, f"{len(accounts['records'])} vs {total}")

    # Paging through nextRecordsUrl with a 200-record batch size.
    headers = {"Sforce-Query-Options": "batchSize=200"}
    page = sf.query("SELECT Id, StageName FROM Opportunity ORDER BY Id", headers=headers)
    ids = [r["Id"] for r in page["records"]]
    pages = 1
    check("salesforce honours batchSize", len(page["records"]) == min(200, page["totalSize"]), str(len(page["records"])))
    while not page["done"]:
        page = sf.query_more(page["nextRecordsUrl"], identifier_is_url=True, headers=headers)
        ids += [r["Id"] for r in page["records"]]
        pages += 1
    check("salesforce pages cover the result once", len(ids) == len(set(ids)) == page["totalSize"] and pages > 1, f"{len(ids)} ids, {pages} pages")
    check("salesforce orders by Id", ids == sorted(ids))

    # Filters: AND/OR, parentheses, LIKE with an escaped apostrophe, IN, datetime literals.
    rows = sf.query_all("SELECT Id, Name FROM Account WHERE Name LIKE 'St. Mary\\'s%' AND (Type = 'hospital' OR Type != 'hospital')")["records"]
    check("salesforce LIKE with an apostrophe", all(r["Name"].startswith("St. Mary's") for r in rows), str([r["Name"] for r in rows][:3]))
    since = "2026-06-01T00:00:00Z"
    recent = sf.query_all(f"SELECT Id, StageName, SystemModstamp FROM Opportunity WHERE SystemModstamp >= {since} AND StageName IN ('Admitted', 'Pending') ORDER BY SystemModstamp, Id")["records"]
    stamps = [r["SystemModstamp"] for r in recent]
    check("salesforce datetime literal and IN", recent and all(s >= "2026-06-01" for s in stamps) and all(r["StageName"] in ("Admitted", "Pending") for r in recent))
    check("salesforce datetime format", re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", stamps[0]) is not None, stamps[0])
    contact = sf.query("SELECT Id, FirstName, Account.Name FROM Contact LIMIT 1")["records"][0]
    check("salesforce relationship field", isinstance(contact["Account"], dict) and contact["Account"]["Name"], json.dumps(contact))

    # Upsert by external id through sObject Collections: repeated, never duplicated.
    owner = sf.query("SELECT Id FROM User LIMIT 1")["records"][0]["Id"]
    account = accounts["records"][0]["Id"]
    records = [
        {"attributes": {"type": "Task"}, "Refbridge_Key__c": f"conformance-{i}", "Subject": f"Conformance task {i}", "OwnerId": owner,
         "WhatId": account, "Status": "Not Started", "Priority": "Normal", "ActivityDate": "2026-11-10"}
        for i in range(3)
    ]
    first = sf.restful("composite/sobjects/Task/Refbridge_Key__c", method="PATCH", json={"allOrNone": False, "records": records})
    check("salesforce collection upsert creates", all(r["success"] and r["created"] for r in first), json.dumps(first))
    records[0]["Status"] = "Completed"
    second = sf.restful("composite/sobjects/Task/Refbridge_Key__c", method="PATCH", json={"allOrNone": False, "records": records})
    check("salesforce collection upsert updates", all(r["success"] and not r["created"] for r in second) and [r["id"] for r in first] == [r["id"] for r in second], json.dumps(second))
    count = sf.query("SELECT COUNT() FROM Task WHERE Refbridge_Key__c LIKE 'conformance-%'")["totalSize"]
    check("salesforce upsert never duplicates", count == 3, str(count))
    status = sf.query(f"SELECT Status FROM Task WHERE Refbridge_Key__c = 'conformance-0'")["records"][0]["Status"]
    check("salesforce upsert changed the row", status == "Completed", status)
    bad = sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": [
        {"attributes": {"type": "Task"}, "Subject": "ok", "OwnerId": owner},
        {"attributes": {"type": "Task"}, "Subject": "bad", "OwnerId": owner, "No_Such_Field__c": 1},
    ]})
    check("salesforce allOrNone rolls back", all(not r["success"] for r in bad) and any(e["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK" for r in bad for e in r["errors"]), json.dumps(bad))

    created = sf.Task.create({"Subject": "Created by simple-salesforce", "OwnerId": owner, "WhatId": account, "Status": "Not Started"})
    check("salesforce sobject create", created["success"] and created["id"].startswith("00T"), json.dumps(created))
    upserted = sf.Task.upsert("Refbridge_Key__c/conformance-single", {"Subject": "Single upsert", "OwnerId": owner})
    again = sf.Task.upsert("Refbridge_Key__c/conformance-single", {"Subject": "Single upsert, again", "OwnerId": owner})
    check("salesforce sobject upsert", upserted in (200, 201) and again in (200, 204), f"{upserted} then {again}")
    fields = {f["name"]: f for f in sf.Task.describe()["fields"]}
    check("salesforce describe", fields["Refbridge_Key__c"]["externalId"] and fields["Refbridge_Key__c"]["unique"], json.dumps(fields.get("Refbridge_Key__c")))

    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    sf.Task.delete(created["id"])
    end = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=1)
    deleted = sf.Task.deleted(start, end)
    check("salesforce deleted/", any(d["id"] == created["id"] for d in deleted["deletedRecords"]), json.dumps(deleted))
    updated = sf.Task.updated(start, end)
    check("salesforce updated/", created["id"] in updated["ids"] or len(updated["ids"]) >= 3, json.dumps(updated)[:200])
    all_rows = sf.query_all(f"SELECT Id, IsDeleted FROM Task WHERE Id = '{created['id']}'", include_deleted=True)["records"]
    check("salesforce queryAll sees deleted rows", all_rows and all_rows[0]["IsDeleted"] is True, json.dumps(all_rows))

    try:
        sf.query("SELECT FROM Account")
        raise AssertionError("malformed SOQL was accepted")
    except SalesforceMalformedRequest as error:
        check("salesforce error body is an array", error.content[0]["errorCode"] == "MALFORMED_QUERY", json.dumps(error.content))
    try:
        sf.Account.get("001000000000000AAA")
        raise AssertionError("a missing record was found")
    except SalesforceResourceNotFound as error:
        check("salesforce 404", error.content[0]["errorCode"] == "NOT_FOUND", json.dumps(error.content))

    limits = sf.limits()
    check("salesforce limits", limits["DailyApiRequests"]["Max"] >= limits["DailyApiRequests"]["Remaining"] > 0, json.dumps(limits["DailyApiRequests"]))
    raw = session.get(f"{instance_url}/services/data/v{version}/limits", headers={"Authorization": f"Bearer {creds['access_token']}"})
    check("salesforce Sforce-Limit-Info", re.fullmatch(r"api-usage=\d+/\d+", raw.headers.get("Sforce-Limit-Info", "")) is not None, str(raw.headers))

    # Token expiry, then the JWT bearer and refresh-token flows.
    requests.post(f"{instance_url}/__admin/expire-tokens").raise_for_status()
    try:
        sf.query("SELECT Id FROM Account LIMIT 1")
        raise AssertionError("an expired token was accepted")
    except SalesforceExpiredSession as error:
        check("salesforce expired token is INVALID_SESSION_ID", error.content[0]["errorCode"] == "INVALID_SESSION_ID", json.dumps(error.content))
    with open(private_key_pem) as key_file:
        private_key = key_file.read()
    sf_jwt = Salesforce(username=creds["username"], consumer_key=creds["client_id"], privatekey=private_key, domain="login", session=salesforce_session(instance_url), version=version)
    check("salesforce JWT bearer login", sf_jwt.query("SELECT COUNT() FROM Account")["totalSize"] == total)
    refreshed = requests.post(f"{instance_url}/services/oauth2/token", data={"grant_type": "refresh_token", "refresh_token": creds["refresh_token"], "client_id": creds["client_id"], "client_secret": creds["client_secret"]})
    body = refreshed.json()
    check("salesforce refresh token grant", refreshed.status_code == 200 and body["access_token"] and body["issued_at"].isdigit(), refreshed.text)
    denied = requests.post(f"{instance_url}/services/oauth2/token", data={"grant_type": "refresh_token", "refresh_token": "nope", "client_id": creds["client_id"]})
    check("salesforce invalid_grant", denied.status_code == 400 and denied.json()["error"] == "invalid_grant", denied.text)


def hubspot_checks(creds):
    base = creds["base_url"]
    client = HubSpot(access_token=creds["private_app_token"], host=base)

    contacts = client.crm.contacts.get_all(properties=["email", "firstname"])
    ids = [c.id for c in contacts]
    check("hubspot get_all reads every contact", len(ids) == len(set(ids)) > 0, str(len(ids)))
    paged, after, pages = [], None, 0
    while True:
        page = client.crm.contacts.basic_api.get_page(limit=25, after=after, properties=["email"])
        paged += [c.id for c in page.results]
        pages += 1
        if not page.paging:
            break
        after = page.paging.next.after
    check("hubspot list paging with after", sorted(paged) == sorted(ids) and pages > 1, f"{len(paged)} ids in {pages} pages")
    page = client.crm.companies.basic_api.get_page(limit=100, properties=["name", "npi", "hubspot_owner_id"])
    check("hubspot companies with properties", page.results and "name" in page.results[0].properties and page.results[0].created_at is not None)

    search = client.crm.contacts.search_api.do_search(public_object_search_request={"filterGroups": [], "limit": 1})
    check("hubspot search total", search.total == len(ids), f"{search.total} vs {len(ids)}")
    since_ms = str(int(datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc).timestamp() * 1000))
    request = PublicObjectSearchRequest(
        filter_groups=[{"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": since_ms}]}],
        sorts=[{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
        properties=["email", "lastmodifieddate"], limit=200)
    found = client.crm.objects.search_api.do_search("contacts", request)
    stamps = [r.properties["lastmodifieddate"] for r in found.results]
    check("hubspot search filter and sort", stamps and stamps == sorted(stamps) and all(s >= "2026-06-01" for s in stamps), str(stamps[:3]))

    # Batch create enough notes to cross the 10,000-result search cap.
    timestamp = "2026-10-01T12:00:00.000Z"
    for chunk in range(101):
        inputs = [SimplePublicObjectBatchInputForCreate(properties={"hs_timestamp": timestamp, "hs_note_body": f"bulk note {chunk * 100 + i}"}) for i in range(100)]
        client.crm.objects.batch_api.create("notes", BatchInputSimplePublicObjectBatchInputForCreate(inputs=inputs))
        if chunk % 50 == 49:
            time.sleep(1)
    time.sleep(1)
    near = client.crm.objects.search_api.do_search("notes", PublicObjectSearchRequest(filter_groups=[], limit=100, after="9900"))
    check("hubspot search pages up to 10,000", len(near.results) == 100 and near.total > 10_000, str(near.total))
    time.sleep(0.5)
    try:
        client.crm.objects.search_api.do_search("notes", PublicObjectSearchRequest(filter_groups=[], limit=100, after="10000"))
        raise AssertionError("search went past 10,000 results")
    except ObjectsApiException as error:
        check("hubspot 10k cap is HTTP 400", error.status == 400 and json.loads(error.body)["status"] == "error", error.body)

    # A unique property, then batch upsert on it: repeated, never duplicated.
    client.crm.properties.core_api.create("tasks", PropertyCreate(name="refbridge_key", label="refbridge key", type="string", field_type="text", group_name="taskinformation", has_unique_value=True))
    company_id = page.results[0].id
    upserts = [SimplePublicObjectBatchInputUpsert(id=f"conformance-{i}", id_property="refbridge_key", properties={
        "hs_timestamp": timestamp, "hs_task_subject": f"Conformance task {i}", "hs_task_status": "NOT_STARTED", "hs_task_priority": "MEDIUM", "hs_task_type": "TODO"}) for i in range(3)]
    first = client.crm.objects.batch_api.upsert("tasks", BatchInputSimplePublicObjectBatchInputUpsert(inputs=upserts))
    check("hubspot batch upsert creates", all(r.new for r in first.results) and len(first.results) == 3)
    upserts[0].properties["hs_task_status"] = "COMPLETED"
    second = client.crm.objects.batch_api.upsert("tasks", BatchInputSimplePublicObjectBatchInputUpsert(inputs=upserts))
    check("hubspot batch upsert updates", not any(r.new for r in second.results) and sorted(r.id for r in first.results) == sorted(r.id for r in second.results))
    time.sleep(0.5)
    same = client.crm.objects.search_api.do_search("tasks", PublicObjectSearchRequest(filter_groups=[{"filters": [{"propertyName": "refbridge_key", "operator": "EQ", "value": "conformance-0"}]}], properties=["hs_task_status"], limit=10))
    check("hubspot upsert never duplicates", same.total == 1 and same.results[0].properties["hs_task_status"] == "COMPLETED", str(same.total))

    task = client.crm.objects.tasks.basic_api.create(SimplePublicObjectInputForCreate(
        properties={"hs_timestamp": timestamp, "hs_task_subject": "Associated task"},
        associations=[{"to": {"id": company_id}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 192}]}]))
    associated = client.crm.associations.v4.basic_api.get_page("tasks", task.id, "companies")
    check("hubspot inline association", [str(a.to_object_id) for a in associated.results] == [str(company_id)], str(associated))

    try:
        client.crm.companies.basic_api.get_by_id("999999999999")
        raise AssertionError("a missing company was found")
    except Exception as error:  # each API package has its own ApiException class
        body = json.loads(error.body)
        check("hubspot 404 error shape", error.status == 404 and body["category"] == "OBJECT_NOT_FOUND" and body["correlationId"], error.body)

    owners = client.crm.owners.owners_api.get_page()
    check("hubspot owners", owners.results and owners.results[0].email)
    raw = requests.get(f"{base}/crm/v3/objects/companies?limit=1", headers={"Authorization": f"Bearer {creds['private_app_token']}"})
    check("hubspot rate limit headers", "X-HubSpot-RateLimit-Daily-Remaining" in raw.headers and "X-HubSpot-RateLimit-Remaining" in raw.headers, str(raw.headers))

    # OAuth: refresh, expire, refresh again.
    tokens = client.oauth.tokens_api.create(grant_type="refresh_token", client_id=creds["client_id"], client_secret=creds["client_secret"], refresh_token=creds["refresh_token"])
    oauth_client = HubSpot(access_token=tokens.access_token, host=base)
    check("hubspot OAuth access token works", oauth_client.crm.owners.owners_api.get_page().results)
    requests.post(f"{base}/__admin/expire-tokens").raise_for_status()
    try:
        oauth_client.crm.owners.owners_api.get_page()
        raise AssertionError("an expired token was accepted")
    except Exception as error:
        check("hubspot expired token is 401", error.status == 401 and json.loads(error.body)["category"] in ("EXPIRED_AUTHENTICATION", "INVALID_AUTHENTICATION"), error.body)
    tokens = client.oauth.tokens_api.create(grant_type="refresh_token", client_id=creds["client_id"], client_secret=creds["client_secret"], refresh_token=tokens.refresh_token)
    check("hubspot refreshed token works", HubSpot(access_token=tokens.access_token, host=base).crm.owners.owners_api.get_page().results)


def main():
    ready = json.loads(open(sys.argv[1]).read())
    salesforce_checks(ready["salesforce"], sys.argv[2])
    hubspot_checks(ready["hubspot"])
    print("all conformance checks passed")


if __name__ == "__main__":
    main()
