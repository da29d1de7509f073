"""docs/react-native.md: every TypeScript block is extracted to the file it names and the lot is
type-checked (tsc strict) against the real type definitions of react-native, react-native-callkeep,
react-native-voip-push-notification, @react-native-firebase/messaging and react-native-agora
(installed from the registry as dev dependencies of clients/typescript/docs-check)."""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.support.node_kit import DOCS_CHECK, KIT, ROOT, npm_ci, require_node, run

# One xdist worker runs every test of the kit: they share its node_modules and build/.
pytestmark = pytest.mark.xdist_group("node_kit")

GUIDE = ROOT / "docs" / "react-native.md"
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
TYPESCRIPT = {"ts", "tsx", "typescript"}
LIBRARIES = (
    "react-native-callkeep",
    "react-native-voip-push-notification",
    "@react-native-firebase/messaging",
    "react-native-agora",
    "@call-orchestrator/client",
)


def blocks() -> list[tuple[str, str, str]]:
    """(language, file, code) of every fenced block; file is '' when the fence names none."""
    found = []
    for match in FENCE.finditer(GUIDE.read_text()):
        language, info, code = match.group(1), match.group(2), match.group(3)
        named = re.search(r"file=(\S+)", info)
        found.append((language, named.group(1) if named else "", code))
    return found


def test_every_typescript_block_names_its_file_once() -> None:
    ts = [(file, code) for language, file, code in blocks() if language in TYPESCRIPT]
    assert len(ts) >= 10
    assert all(file for file, _ in ts), "a TypeScript block without file=…"
    files = [file for file, _ in ts]
    assert len(files) == len(set(files)), "two blocks write the same file"
    text = "\n".join(code for _, code in ts)
    for library in LIBRARIES:
        assert f'from "{library}"' in text, f"the guide never uses {library}"


def test_xml_blocks_are_well_formed() -> None:
    xml = [(file, code) for language, file, code in blocks() if language == "xml"]
    assert {Path(file).name for file, _ in xml} >= {"Info.plist", "AndroidManifest.xml"}
    for file, code in xml:
        ET.fromstring(code)  # raises on a typo
        assert file
    by_name = {Path(file).name: code for file, code in xml}
    plist = ET.fromstring(by_name["Info.plist"])
    modes = [e.text for e in plist.iter("string")]
    assert {"voip", "audio", "remote-notification"} <= set(modes)
    manifest = by_name["AndroidManifest.xml"]
    for needed in (
        "io.wazo.callkeep.VoiceConnectionService",
        "android.telecom.ConnectionService",
        "android.permission.BIND_TELECOM_CONNECTION_SERVICE",
        "android.permission.RECORD_AUDIO",
        "android.permission.POST_NOTIFICATIONS",
    ):
        assert needed in manifest, needed


def test_localisation_keys_match_the_payload_builders() -> None:
    """The keys the guide tells apps to ship are the ones our pushes carry."""
    from orchestrator.adapters.push import apns_payload, fcm_payload

    text = GUIDE.read_text()
    for key in (
        apns_payload.MISSED_TITLE_LOC_KEY,
        *apns_payload.MISSED_LOC_KEY.values(),
        fcm_payload.MISSED_TITLE_LOC_KEY,
        *fcm_payload.MISSED_BODY_LOC_KEY.values(),
    ):
        assert f'"{key}"' in text, key


@pytest.fixture(scope="module")
def installed() -> None:
    require_node()
    npm_ci(KIT)
    npm_ci(DOCS_CHECK)


def test_typescript_blocks_compile_against_the_real_libraries(installed: None) -> None:
    out = DOCS_CHECK / "blocks"
    shutil.rmtree(out, ignore_errors=True)
    for language, file, code in blocks():
        if language in TYPESCRIPT:
            target = out / file
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(code)
    run(["npx", "--no-install", "tsc", "-p", "tsconfig.json"], DOCS_CHECK)


def test_a_wrong_block_fails_the_check(installed: None) -> None:
    """The check can fail: a misspelt callkeep method is a type error."""
    out = DOCS_CHECK / "blocks"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    (out / "wrong.ts").write_text(
        'import RNCallKeep from "react-native-callkeep";\n'
        'RNCallKeep.reportEndCall("00000000-0000-4000-8000-000000000000", 2);\n'
    )
    with pytest.raises(AssertionError, match="reportEndCall"):
        run(["npx", "--no-install", "tsc", "-p", "tsconfig.json"], DOCS_CHECK)
    shutil.rmtree(out, ignore_errors=True)
