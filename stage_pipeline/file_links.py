"""Links to an attempt's files through the file service, for the approval form and the stage's artifact.

Seed 002 (workspace files visible to the user): the form says "look at reference_points.png" and now links to it.
A link is signed (:func:`signed_link`), so the image opens in the browser beside the Prefect UI without a second
password, and it grants GET of that one file only, for :data:`LINK_LIFETIME_S`.

Example:
    >>> signed_link("http://files:8766", "admin:pw", "projects/p/stages/a/1/counts.png", expires=1000)
    'http://files:8766/files/projects/p/stages/a/1/counts.png?exp=1000&sig=...'
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote, urlencode

from stage_pipeline.file_rules import check_path, link_key, link_signature
from stage_pipeline.workspace import list_files

#: How long links stay valid (an approval can wait for days).
LINK_LIFETIME_S = 14 * 24 * 3600
#: What the form shows inline (images) and links to (everything else that a browser opens).
IMAGES = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp")
VIEWABLE = (*IMAGES, ".mp4", ".webm", ".txt", ".csv", ".json", ".log", ".md", ".html", ".pdf")
#: At most this many files are linked (a workspace of thousands of frames would drown the form).
MAX_LINKS = 20


def password_of(auth: str) -> str:
    """The password of a ``user:password`` auth string (the whole string when it has no ':')."""
    return auth.partition(":")[2] if ":" in auth else auth


def signed_link(base_url: str, auth: str, path: str, expires: int | None = None) -> str:
    """A URL granting GET of the store-relative ``path`` until ``expires`` (default :data:`LINK_LIFETIME_S`)."""
    check_path(path)
    exp = expires if expires is not None else int(time.time() + LINK_LIFETIME_S)
    sig = link_signature(link_key(password_of(auth)), path, exp)
    return f"{base_url.rstrip('/')}/files/{quote(path)}?{urlencode({'exp': exp, 'sig': sig})}"


def workspace_links(base_url: str, auth: str, root: Path, workspace: Path, title: str) -> str:
    """Markdown: the viewable files of ``workspace`` (images inline), each a signed link; "" when none.

    ``root`` is the store's root (links name paths relative to it); hidden files are left out.
    """
    rel = Path(workspace).relative_to(root).as_posix()
    files = [f for f in list_files(workspace) if f.path.lower().endswith(VIEWABLE)]
    files = [f for f in files if not any(part.startswith(".") for part in f.path.split("/"))]
    if not files:
        return ""
    lines = [f"**{title}** (links valid {LINK_LIFETIME_S // 86400} days):", ""]
    for f in files[:MAX_LINKS]:
        url = signed_link(base_url, auth, f"{rel}/{f.path}")
        lines.append(f"- [{f.path}]({url}) ({f.size:,} bytes)")
    if len(files) > MAX_LINKS:
        lines.append(f"- ... and {len(files) - MAX_LINKS} more: `opsflow files ls {rel}`")
    images = [f for f in files[:MAX_LINKS] if f.path.lower().endswith(IMAGES)]
    for f in images[:4]:
        lines += ["", f"![{f.path}]({signed_link(base_url, auth, f'{rel}/{f.path}')})"]
    return "\n".join(lines)
