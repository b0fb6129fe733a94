"""Start-up work: serve the project's profiles/ as ordinary resources."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .. import jsonutil
from ..outcome import FHIRError

if TYPE_CHECKING:
    from .service import FHIRService

log = logging.getLogger(__name__)


def install_profiles(service: "FHIRService") -> int:
    """PUT every resource in profiles/ with its own id; unchanged ones make no new version."""
    pdir = service.settings.profiles_dir
    if not pdir.is_dir():
        return 0
    count = 0
    for path in sorted(pdir.rglob("*.json")):
        if path.name in ("package.json", ".index.json"):
            continue
        try:
            resource = jsonutil.loads(path.read_bytes())
        except jsonutil.JSONError:
            log.warning("profiles/%s is not valid JSON; skipped", path.name)
            continue
        if not isinstance(resource, dict) or not resource.get("id") or not resource.get("resourceType"):
            continue
        try:
            service.update(resource["resourceType"], resource["id"], resource, prevalidated=True)
            count += 1
        except FHIRError as exc:
            log.warning("profiles/%s not installed: %s", path.name, exc)
    return count
