"""Headless Chromium (Debian's chromium and chromium-driver) driven by Selenium, at 1280x800."""

from __future__ import annotations

import shutil
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

WIDTH, HEIGHT = 1280, 800


class BrowserMissing(RuntimeError):
    pass


def chromium(downloads: Path) -> webdriver.Chrome:
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not browser or not driver:
        raise BrowserMissing("chromium and chromium-driver are missing: `make install` installs them "
                             "(services/console/install_browser.sh)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={WIDTH},{HEIGHT}", "--force-device-scale-factor=1", "--lang=en-US"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    # The system driver, so Selenium Manager never looks for one to download.
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    # The window's size includes the browser's frame; the page itself gets 1280x800.
    chrome.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
    return chrome


class Page:
    """The console in one browser tab: navigate, wait until the page says it is ready, look."""

    def __init__(self, driver: webdriver.Chrome, base_url: str, shots: Path):
        self.driver = driver
        self.base_url = base_url.rstrip("/")
        self.shots = shots

    def ready_mark(self) -> str:
        # '' on a page that is not the console's (a blank tab, /healthz).
        return self.driver.execute_script("const m = document.querySelector('main'); return m ? m.dataset.ready || '' : ''")

    def wait_ready(self, page: str, after: str = "", timeout: float = 30) -> None:
        WebDriverWait(self.driver, timeout).until(
            lambda d: d.execute_script("const m = document.querySelector('main'); return m ? m.dataset.page : ''") == page
            and self.ready_mark() not in ("", after))

    def open(self, fragment: str, page: str) -> None:
        before = self.ready_mark() if self.driver.current_url.startswith(self.base_url) else ""
        self.driver.get(f"{self.base_url}/#{fragment}")
        self.wait_ready(page, before)

    def find(self, css: str):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def wait_for(self, css: str, timeout: float = 30):
        return WebDriverWait(self.driver, timeout).until(lambda d: d.find_elements(By.CSS_SELECTOR, css))[0]

    def wait_text(self, css: str, timeout: float = 30) -> str:
        WebDriverWait(self.driver, timeout).until(lambda d: self.find(css).text.strip())
        return self.find(css).text.strip()

    def screenshot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def errors_shown(self) -> list[str]:
        return [e.text for e in self.find_all(".error") if e.text.strip()]
