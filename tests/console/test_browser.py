"""The console in a real headless Chromium over the loaded organisation, screenshots of each page.

One walk through, in the order an analyst goes: the summary, the riskiest user,
a heat-map cell (its values checked against GetUserTimeline), an acknowledgement
that lowers the user's risk, the events behind one of the user's anomalies; the
incidents, one incident with its findings and the entity it is about, the entities;
the anomalies list with the query field and a CSV export, the profiles with a preview; a case
opened from an incident, commented, assigned and closed as false positive, which lowers the
user's risk. Screenshots go to .data/test-output/console/.
"""

from __future__ import annotations

import csv
import time

import pytest
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from harness.browser import HEIGHT, WIDTH, Page, chromium
from tests.query.conftest import Store

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

LAYOUT_SHIFT = """
window.__shift = 0;
new PerformanceObserver((list) => { for (const e of list.getEntries()) if (!e.hadRecentInput) window.__shift += e.value; })
  .observe({type: "layout-shift", buffered: true});
"""


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    """One browser for every test here: starting Chromium is the dearest step of a short test."""
    chrome = chromium(tmp_path_factory.mktemp("downloads"))
    try:
        yield chrome
    finally:
        chrome.quit()


@pytest.fixture
def page(driver, organisation, output_dir, tmp_path):
    """A clean start for each test: no console page loaded, signed in, downloads into the test's own folder."""
    driver.get(organisation.url + "healthz")  # the console's origin, whose sessionStorage the pages read
    driver.execute_script("sessionStorage.setItem('ueba-token', arguments[0])", organisation.token)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    return Page(driver, organisation.url, output_dir)


def test_an_analyst_walks_from_the_summary_to_a_user_and_reviews(page, api, tmp_path):
    summary = api.post("/api/v1/query/GetSummary", json={"top_users": 10}).json()
    riskiest = summary["riskiest_users"][0]

    page.open("/summary", "summary")
    assert page.driver.execute_script("return [innerWidth, innerHeight]") == [WIDTH, HEIGHT]
    assert page.find("#kpi-anomalies").text == f"{int(summary['total_anomalies']):,}"
    assert page.find("#risk-timeline canvas")  # the chart drew
    entities = api.post("/api/v1/query/ListEntities", json={"page_size": 8}).json()["entities"]
    assert [a.text for a in page.find_all("#riskiest-entities tbody a")] == [e["entity"]["name"] for e in entities]
    page.driver.execute_script(LAYOUT_SHIFT)
    time.sleep(0.5)
    assert page.driver.execute_script("return window.__shift") < 0.1
    page.screenshot("summary")

    link = page.find("#riskiest tbody tr:first-child a")
    assert link.text == riskiest["user"]
    before = page.ready_mark()
    link.click()
    page.wait_ready("users", before)
    assert page.find("#user-name").text == riskiest["user"]
    assert not page.errors_shown()
    page.screenshot("user")

    check_heat_map_cell(page, api, riskiest["user"])
    events_behind_an_anomaly(page, api)
    page.driver.back()  # to the user page, as a person would
    page.wait_ready("users", page.ready_mark())
    acknowledge_lowers_risk(page, api, riskiest["user"])


def check_heat_map_cell(page: Page, api, user: str) -> None:
    day = page.find("#day").get_attribute("value")
    cells = page.find_all("#heatmap button.cell.above") or page.find_all("#heatmap button.cell")
    assert cells, "the heat map has no cells"
    cell = cells[0]
    model, hour = cell.get_attribute("data-model"), int(cell.get_attribute("data-hour"))
    cell.send_keys(Keys.ENTER)  # a cell is a button: the keyboard opens it as a click does
    page.wait_for("#features tbody tr")
    shown = {row.get_attribute("data-feature"): (float(row.get_attribute("data-expected")), float(row.get_attribute("data-observed")))
             for row in page.find_all("#features tbody tr")}
    timeline = api.post("/api/v1/query/GetUserTimeline", json={"user": user, "day": f"{day}T00:00:00Z"}).json()
    card = next(c for h in timeline["hours"] if int(h["hour"][11:13]) == hour for c in h["cards"] if c["model"] == model)
    expected = {f["name"]: (f.get("expected", 0.0), f.get("observed", 0.0)) for f in card["features"]}
    assert shown and sorted(shown) == sorted(expected)
    for name, values in shown.items():
        assert values == pytest.approx(expected[name]), name
    page.screenshot("user-heatmap-cell")


def acknowledge_lowers_risk(page: Page, api, user: str) -> None:
    risk_before = int(page.find("#user-risk").text)
    page.find("#user-anomalies button.ack").click()
    page.wait_text("#review-result")
    risk_after = int(page.find("#user-risk").text)
    assert risk_after < risk_before
    served = api.post("/api/v1/query/GetUser", json={"user": user}).json()["risk"]
    assert served.get("risk", 0) == risk_after
    page.screenshot("user-acknowledged")


def events_behind_an_anomaly(page: Page, api) -> None:
    link = page.find("#user-anomalies a.anomaly-link")
    anomaly_id = link.get_attribute("href").rsplit("/", 1)[1]
    before = page.ready_mark()
    link.click()
    page.wait_ready("anomalies", before)
    served = api.post("/api/v1/query/ListAnomalyEvents", json={"anomaly_id": anomaly_id, "page_size": 100}).json()
    shown = [row.get_attribute("data-event") for row in page.find_all("#anomaly-events tbody tr")]
    assert shown and shown == [e["event_id"] for e in served["events"]]
    anomaly = api.post("/api/v1/query/GetAnomaly", json={"id": anomaly_id}).json()
    assert page.find("#anomaly-description").text == anomaly["description"]
    assert not page.errors_shown()
    page.screenshot("anomaly-events")


def test_incidents_lead_to_their_findings_and_to_the_entity(page, api):
    page.open("/incidents", "incidents")
    listed = api.post("/api/v1/query/ListIncidents", json={"statuses": ["ANOMALY_STATUS_NEW"], "page_size": 100}).json()
    rows = page.find_all("#incidents tbody tr")
    assert rows and [r.get_attribute("data-id") for r in rows] == [i["id"] for i in listed["incidents"]]
    page.screenshot("incidents")

    first = listed["incidents"][0]
    before = page.ready_mark()
    rows[0].find_element("css selector", "td:nth-child(2) a").click()
    page.wait_ready("incidents", before)
    detail = api.post("/api/v1/query/GetIncident", json={"id": first["id"]}).json()
    assert page.find("#incident-title").text == (first.get("title") or first["kind"])
    assert len(page.find_all("main table.anomalies tbody tr")) == len(detail["anomalies"])
    assert not page.errors_shown()
    page.screenshot("incident")

    before = page.ready_mark()
    page.find("dl.facts dd a[href^='#/entities/']").click()
    page.wait_ready("entities", before)
    entity = api.post("/api/v1/query/GetEntity", json={"entity": first["entity"]}).json()
    assert page.find("#entity-name").text == first["entity"]["name"]
    assert int(page.find("#entity-risk").text) == entity["risk"].get("risk", 0)
    assert page.find("#entity-timeline canvas") and not page.errors_shown()
    page.screenshot("entity")

    # A page token in the hash: the list goes on after it, and leads back to the first page.
    first_five = api.post("/api/v1/query/ListIncidents", json={"page_size": 5}).json()
    rest = api.post("/api/v1/query/ListIncidents", json={"page_size": 100, "page_token": first_five["next_page_token"]}).json()
    page.open(f"/incidents?status=&page={first_five['next_page_token']}", "incidents")
    assert [r.get_attribute("data-id") for r in page.find_all("#incidents tbody tr")] == [i["id"] for i in rest["incidents"]]
    assert page.find(".pager a").text == "First page"

    page.open("/entities", "entities")
    served = api.post("/api/v1/query/ListEntities", json={"page_size": 100}).json()
    assert [a.text for a in page.find_all("#entities tbody td:first-child a")] == [e["entity"]["name"] for e in served["entities"]]
    page.screenshot("entities")


def test_anomalies_query_suggestions_bulk_review_and_csv(page, api, tmp_path):
    page.open("/anomalies", "anomalies")
    query = page.find("#query")
    query.send_keys("pro")
    option = page.wait_for("#query-suggestions li")
    assert option.text == "profile:"
    query.send_keys(Keys.ENTER)
    assert query.get_attribute("value") == "profile:"
    values = lambda: [li.text for li in page.find_all("#query-suggestions:not([hidden]) li")]
    WebDriverWait(page.driver, 20).until(lambda _d: values() and values()[0] != "profile:")
    profiles = {p["name"] for p in api.post("/api/v1/profiles/ListProfiles", json={"page_size": 200}).json()["profiles"]}
    assert all(v.startswith("profile:") for v in values()) and {v.split(":", 1)[1].strip('"') for v in values()} & profiles
    query.send_keys(Keys.ESCAPE)
    query.clear()

    boxes = page.find_all("#anomaly-table tbody input[type=checkbox]")
    assert len(boxes) >= 2
    boxes[0].click()
    boxes[1].click()
    assert page.find("#selection").text == "2 selected"
    page.find("button[data-action=ACKNOWLEDGE]").click()
    assert page.find("#confirm-text").text == "Acknowledge: 2 anomalies?"  # the count, before anything changes
    page.screenshot("anomalies-confirm")
    page.find("#confirm-ok").click()
    WebDriverWait(page.driver, 30).until(lambda _d: page.find("#status").text == "2 updated")

    listed = api.post("/api/v1/query/ListAnomalies", json={"filter": {"statuses": ["ANOMALY_STATUS_NEW"]}, "page_size": 1000}).json()
    page.find("#export-csv").click()
    deadline = time.monotonic() + 20
    while not (tmp_path / "anomalies.csv").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    with open(tmp_path / "anomalies.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["id"] for r in rows} == {a["id"] for a in listed["anomalies"]}
    page.screenshot("anomalies")


def test_a_case_opened_from_an_incident_is_worked_and_closed_as_false_positive(page, api):
    listed = api.post("/api/v1/query/ListIncidents", json={"statuses": ["ANOMALY_STATUS_NEW"], "order_by": "risk desc",
                                                           "page_size": 100}).json()["incidents"]
    # The strongest open incident about an account: closing it must lower that account's risk.
    incident = next(i for i in listed if i["entity"].get("type") == "ENTITY_TYPE_USER")
    user = incident["entity"]["name"]
    risk_before = api.post("/api/v1/query/GetUser", json={"user": user}).json()["risk"].get("risk", 0)
    assert risk_before > 0

    page.open(f"/incidents/{incident['id']}", "incidents")
    before = page.ready_mark()
    page.find("#open-case").send_keys(Keys.ENTER)  # a button: the keyboard opens the case
    page.wait_ready("cases", before)
    assert [r.get_attribute("data-id") for r in page.find_all("#case-incidents tbody tr")] == [incident["id"]]
    assert page.find("#case-status").text == "new" and not page.errors_shown()
    assert not page.find("#actor-field").is_displayed()  # with tokens the token names the actor

    page.find("#case-comment").send_keys("same host as last week's test")
    page.find("#comment-form button").click()
    comment = page.wait_for("#case-timeline li[data-kind=comment]")
    assert comment.find_element("css selector", ".text").text == "same host as last week's test"
    owner = page.find("#case-owner")
    owner.clear()
    owner.send_keys("tier2")
    page.find("#assign-form button").click()
    page.wait_for("#case-timeline li[data-kind=assigned]")
    page.screenshot("case")

    assert page.find("#close-reason").get_attribute("value") == "FALSE_POSITIVE"
    page.find("#close-case").click()
    findings = int(incident["anomaly_count"])
    marks = f"{findings} finding" + ("" if findings == 1 else "s")
    assert page.find("#confirm-text").text == f"Close as false positive: it will mark {marks} of 1 incident as false positive?"
    page.screenshot("case-close-confirm")
    page.find("#confirm-ok").click()
    page.wait_text("#case-result")
    assert page.find("#case-status").text == "closed"
    assert page.find("#case-result p").text == f"Closed as false positive; {marks} marked false positive."

    case_id = page.driver.current_url.rsplit("/", 1)[1]
    detail = api.post("/api/v1/cases/GetCase", json={"id": case_id}).json()
    shown = [(li.get_attribute("data-kind"), li.get_attribute("data-actor")) for li in page.find_all("#case-timeline li")]
    assert shown == [(e["kind"], e["actor"]) for e in detail["timeline"]]
    assert {"opened", "comment", "assigned", "findings_reviewed", "closed"} <= {kind for kind, _ in shown}
    assert {actor for _, actor in shown} == {detail["case"]["created_by"]}  # the token's name, on every entry

    risk_after = api.post("/api/v1/query/GetUser", json={"user": user}).json()["risk"].get("risk", 0)
    assert risk_after < risk_before
    change = page.find(f"#risk-changes li[data-user='{user}']").text
    assert change.endswith(f"risk {risk_before} → {risk_after}")
    page.screenshot("case-closed")
    page.open(f"/users/{user}", "users")
    assert int(page.find("#user-risk").text) == risk_after

    page.open("/cases?status=closed&owner=tier2", "cases")
    assert case_id in [r.get_attribute("data-id") for r in page.find_all("#cases tbody tr")]
    assert not page.errors_shown()
    page.screenshot("cases")


def test_without_tokens_the_name_given_on_the_page_is_the_actor(driver, without_tokens, output_dir):
    incident, _ = Store(without_tokens.engine, without_tokens.database_url, "default").incident("frank", (75,))
    page = Page(driver, without_tokens.url, output_dir)
    page.open("/cases", "cases")
    assert page.find("#actor-field").is_displayed()
    page.find("#actor").send_keys("erin", Keys.TAB)
    page.open(f"/incidents/{incident}", "incidents")
    before = page.ready_mark()
    page.find("#open-case").click()
    page.wait_ready("cases", before)
    assert [li.get_attribute("data-actor") for li in page.find_all("#case-timeline li")] == ["erin"]


def test_profiles_are_tuned_with_a_preview_before_saving(page, api):
    page.open("/profiles", "profiles")
    rows = page.find_all("#profiles tbody tr")
    assert len(rows) == len(api.post("/api/v1/profiles/ListProfiles", json={"page_size": 200}).json()["profiles"])
    rows[0].find_element("css selector", "button").click()
    page.find("#preview").click()
    text = page.wait_text("#preview-count")
    assert text.startswith("Would have raised ")
    assert not page.errors_shown()
    page.screenshot("profiles-preview")


def test_the_pages_and_their_scripts_are_served_by_the_console(api):
    page = api.get("/")
    assert page.status_code == 200 and "<title>UEBA console</title>" in page.text
    for asset in ("/static/console.js", "/static/console.css", "/static/vendor/uPlot.iife.min.js"):
        assert api.get(asset).status_code == 200, asset
    assert "http://" not in page.text and "https://" not in page.text  # nothing from elsewhere
