"""A real headless Chromium (Debian's `chromium` + `chromium-driver`) driven by Selenium.

Selenium is blocking: every call runs in a thread so the test's event loop (fake Auth, worker)
keeps serving while the browser waits. Missing browser: skipped and listed, or failed under CI.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

from tests.support.services import require

CHROMIUM = ("/usr/bin/chromium", "chromium", "chromium-browser")
DRIVER = ("/usr/bin/chromedriver", "chromedriver")
LAPTOP, PHONE = (1280, 800), (390, 844)


def _find(names: tuple[str, ...]) -> str | None:
    for name in names:
        path = name if os.path.isabs(name) and os.access(name, os.X_OK) else shutil.which(name)
        if path:
            return path
    return None


def require_browser() -> tuple[str, str]:
    try:
        import selenium  # noqa: F401
    except ImportError:
        require("selenium", False, "the selenium package is not installed (dev extra)")
    chromium, driver = _find(CHROMIUM), _find(DRIVER)
    require("chromium", chromium is not None, "`apt-get install -y chromium` (Debian)")
    require("chromedriver", driver is not None, "`apt-get install -y chromium-driver` (Debian)")
    assert chromium and driver
    return chromium, driver


class Browser:
    def __init__(self, chromium: str, driver: str, *, javascript: bool = True) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        for arg in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-extensions",
            "--no-first-run",
            f"--window-size={LAPTOP[0]},{LAPTOP[1]}",
        ):
            options.add_argument(arg)
        if not javascript:
            prefs = {"profile.managed_default_content_settings.javascript": 2}
            options.add_experimental_option("prefs", prefs)
        self.driver = webdriver.Chrome(options=options, service=Service(executable_path=driver))
        self.driver.set_page_load_timeout(30)

    async def run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def get(self, url: str) -> None:
        await self.run(self.driver.get, url)

    async def url(self) -> str:
        return str(await self.run(lambda: self.driver.current_url))

    async def source(self) -> str:
        return str(await self.run(lambda: self.driver.page_source))

    async def texts(self, css: str) -> list[str]:
        def read() -> list[str]:
            from selenium.webdriver.common.by import By

            return [el.text for el in self.driver.find_elements(By.CSS_SELECTOR, css)]

        return list(await self.run(read))

    async def attrs(self, css: str, name: str) -> list[str]:
        def read() -> list[str]:
            from selenium.webdriver.common.by import By

            found = self.driver.find_elements(By.CSS_SELECTOR, css)
            return [str(el.get_attribute(name)) for el in found]

        return list(await self.run(read))

    async def wait(self, css: str, text: str | None = None, timeout: float = 15) -> None:
        def until() -> None:
            from selenium.webdriver.common.by import By
            from selenium.webdriver.support import expected_conditions as ec
            from selenium.webdriver.support.ui import WebDriverWait

            condition = (
                ec.text_to_be_present_in_element((By.CSS_SELECTOR, css), text)
                if text is not None
                else ec.presence_of_element_located((By.CSS_SELECTOR, css))
            )
            WebDriverWait(self.driver, timeout).until(condition)

        await self.run(until)

    async def fill(self, css: str, value: str) -> None:
        def act() -> None:
            from selenium.webdriver.common.by import By

            box = self.driver.find_element(By.CSS_SELECTOR, css)
            box.clear()
            box.send_keys(value)

        await self.run(act)

    async def click(self, css: str, *, accept_confirm: bool = False) -> None:
        def act() -> None:
            from selenium.webdriver.common.by import By
            from selenium.webdriver.support import expected_conditions as ec
            from selenium.webdriver.support.ui import WebDriverWait

            self.driver.find_element(By.CSS_SELECTOR, css).click()
            if accept_confirm:
                WebDriverWait(self.driver, 5).until(ec.alert_is_present())
                self.driver.switch_to.alert.accept()

        await self.run(act)

    async def select(self, css: str, value: str) -> None:
        def act() -> None:
            from selenium.webdriver.common.by import By
            from selenium.webdriver.support.ui import Select

            Select(self.driver.find_element(By.CSS_SELECTOR, css)).select_by_value(value)

        await self.run(act)

    async def screenshot(self, path: Path, size: tuple[int, int]) -> Path:
        """The whole page at a width: the window grows to the document's height first."""

        def shoot() -> None:
            self.driver.set_window_size(*size)
            height = self.driver.execute_script("return document.documentElement.scrollHeight")
            self.driver.set_window_size(size[0], max(size[1], int(height) + 20))
            self.driver.save_screenshot(str(path))
            self.driver.set_window_size(*LAPTOP)

        await self.run(shoot)
        return path

    async def add_cookie(self, name: str, value: str, path: str) -> None:
        """For the current page's host (the browser must be on it already)."""
        cookie = {
            "name": name,
            "value": value,
            "path": path,
            "httpOnly": True,
            "sameSite": "Strict",
        }
        await self.run(self.driver.add_cookie, cookie)

    async def quit(self) -> None:
        await self.run(self.driver.quit)
