"""A loopback Exchange Web Services server for the EWS inbox tests.

It answers the SOAP operations exchangelib sends when the adapter watches a folder, in the shapes an
on-premises Exchange Server 2016 sends back (``ServerVersionInfo`` header, ``ResponseMessages``
with ``ResponseClass`` and ``ResponseCode``), and nothing more:

- ``ConvertId``: exchangelib's version probe; answered with an error message, as Exchange answers
  the probe's dummy id, but with the version header the probe is after;
- ``GetFolder`` for the distinguished folders (``root``, ``msgfolderroot``, ``inbox``) and by id;
- ``FindFolder`` (shallow, by display name): how a folder path such as ``Inbox/Stored`` is walked;
- ``SyncFolderItems``: changes since an opaque ``SyncState``, paged by ``MaxChangesReturned``;
- ``GetItem`` with ``MimeContent``; ``UpdateItem`` setting ``IsRead``; ``MoveItem``.

Every request is checked for HTTP Basic credentials. Each operation the server performs is appended
to :attr:`EwsServer.events`, in order, and a test can add its own events (such as "stored") to the
same list with :meth:`EwsServer.note`, so a test can prove what happened before what.
"""

from __future__ import annotations

import base64
import binascii
import http.server
import itertools
import ssl
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape

from defusedxml.ElementTree import fromstring  # type: ignore[import-untyped]

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
MESSAGES = "http://schemas.microsoft.com/exchange/services/2006/messages"
TYPES = "http://schemas.microsoft.com/exchange/services/2006/types"
M = f"{{{MESSAGES}}}"
T = f"{{{TYPES}}}"

# What Exchange Server 2016 CU23 puts in every response header.
VERSION_HEADER = (
    '<h:ServerVersionInfo MajorVersion="15" MinorVersion="1" MajorBuildNumber="2507"'
    ' MinorBuildNumber="6" Version="V2017_07_11"'
    f' xmlns:h="{TYPES}" xmlns="{TYPES}"'
    ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
    ' xmlns:xsd="http://www.w3.org/2001/XMLSchema"/>'
)

ROOT_ID = "AQMkADAwATM0MDAAMS1iNTcwLWI2NTEtMDACLTAwCgAuAAADroot"
MSG_ROOT_ID = "AQMkADAwATM0MDAAMS1iNTcwLWI2NTEtMDACLTAwCgAuAAADtois"
INBOX_ID = "AQMkADAwATM0MDAAMS1iNTcwLWI2NTEtMDACLTAwCgAuAAADinbox"


@dataclass
class MailFolder:
    id: str
    name: str
    parent: str | None
    distinguished: str | None = None
    folder_class: str = "IPF.Note"


@dataclass
class MailItem:
    """One message in the mailbox, as the server holds it."""

    id: str
    changekey: str
    mime: bytes
    folder: str
    received: datetime
    is_read: bool = False


@dataclass(frozen=True)
class Change:
    seq: int
    kind: str  # "create", "read" or "delete"
    item_id: str
    folder: str


class EwsServer:
    """An EWS endpoint on 127.0.0.1 holding one mailbox. Use as a context manager."""

    def __init__(
        self,
        *,
        username: str = "SCHOOL\\svc-sgalert",
        password: str = "correct horse battery staple",  # noqa: S107 (an invented test secret)
        mailbox: str = "safeguarding@school.example.org",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.port = port
        self.tls = tls
        self.username = username
        self.password = password
        self.mailbox = mailbox
        self.lock = threading.Lock()
        self.folders: dict[str, MailFolder] = {
            ROOT_ID: MailFolder(ROOT_ID, "Root", None, "root", ""),
            MSG_ROOT_ID: MailFolder(
                MSG_ROOT_ID, "Top of Information Store", ROOT_ID, "msgfolderroot"
            ),
            INBOX_ID: MailFolder(INBOX_ID, "Inbox", MSG_ROOT_ID, "inbox"),
        }
        self.items: dict[str, MailItem] = {}
        self.changes: list[Change] = []
        self.generation = 1  # bumped to make every earlier SyncState invalid
        self.events: list[tuple[str, str]] = []
        self.operations: list[str] = []
        self.requests: list[bytes] = []
        self.sync_states_seen: list[str | None] = []
        # Operations to answer with a SOAP fault, as a throttled Exchange does: name -> code.
        self.refuse: dict[str, str] = {}
        self.handler_errors: list[BaseException] = []
        self._ids = itertools.count(1)
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----- mailbox contents ----------------------------------------------------------------

    def add_folder(self, name: str, parent: str = INBOX_ID) -> str:
        folder_id = f"AQMkADAwATM0MDAAMS1iNTcwLWI2NTEtMDACLTAwCgAuAAAD{next(self._ids):04d}"
        with self.lock:
            self.folders[folder_id] = MailFolder(folder_id, name, parent)
        return folder_id

    def add_message(self, mime: bytes, *, is_read: bool = False, folder: str = INBOX_ID) -> str:
        """A message arrives; returns its EWS item id."""
        number = next(self._ids)
        item_id = base64.b64encode(f"sgtest-item-{number:04d}-{'x' * 24}".encode()).decode()
        with self.lock:
            self.items[item_id] = MailItem(
                item_id, f"CQAAABYAAAD{number:04d}", mime, folder, datetime.now(UTC), is_read
            )
            self._change("create", item_id, folder)
        return item_id

    def invalidate_sync_states(self) -> None:
        """As after a mailbox move or a database restore: every earlier SyncState is refused."""
        with self.lock:
            self.generation += 1

    def note(self, event: str, detail: str) -> None:
        """Record something the test saw, in order with what the server did."""
        with self.lock:
            self.events.append((event, detail))

    def events_of(self, kind: str) -> list[str]:
        with self.lock:
            return [detail for event, detail in self.events if event == kind]

    def _change(self, kind: str, item_id: str, folder: str) -> None:
        self.changes.append(Change(len(self.changes) + 1, kind, item_id, folder))

    # ----- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host!s}:{port}/EWS/Exchange.asmx"

    def __enter__(self) -> EwsServer:
        server = self

        class Handler(_Handler):
            ews = server

        httpd = _HttpServer(("127.0.0.1", self.port), Handler)
        if self.tls is not None:
            # The handshake happens in the request thread, on first read, not in accept().
            httpd.socket = self.tls.wrap_socket(
                httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        httpd.errors = self.handler_errors
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="ews-test-server"
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._httpd is not None and self._thread is not None
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    # ----- SOAP operations -----------------------------------------------------------------

    def handle(self, operation: Element) -> tuple[int, str]:
        """The HTTP status and SOAP body answering one operation."""
        name = operation.tag.removeprefix(M)
        with self.lock:
            self.operations.append(name)
            if name in self.refuse:
                return 500, _fault(self.refuse[name])
            method = getattr(self, f"_op_{name}", None)
            if method is None:
                return 500, _fault("ErrorInvalidRequest")
            body: str = method(operation)
            return 200, body

    def _op_ConvertId(self, request: Element) -> str:
        return _response(
            "ConvertId",
            [_error("ConvertId", "ErrorInvalidIdMalformed", "Id is malformed.")],
        )

    def _folder_for(self, ref: Element) -> MailFolder | None:
        if ref.tag == f"{T}DistinguishedFolderId":
            wanted = ref.get("Id")
            return next((f for f in self.folders.values() if f.distinguished == wanted), None)
        return self.folders.get(ref.get("Id", ""))

    def _folder_xml(self, folder: MailFolder) -> str:
        unread = sum(1 for i in self.items.values() if i.folder == folder.id and not i.is_read)
        total = sum(1 for i in self.items.values() if i.folder == folder.id)
        children = sum(1 for f in self.folders.values() if f.parent == folder.id)
        tag = "Folder"
        parent = (
            f'<t:ParentFolderId Id="{folder.parent}" ChangeKey="AQAAAA=="/>'
            if folder.parent
            else ""
        )
        folder_class = (
            f"<t:FolderClass>{folder.folder_class}</t:FolderClass>" if folder.folder_class else ""
        )
        return (
            f'<t:{tag}><t:FolderId Id="{folder.id}" ChangeKey="AQAAABYAAAA="/>{parent}'
            f"{folder_class}<t:DisplayName>{escape(folder.name)}</t:DisplayName>"
            f"<t:TotalCount>{total}</t:TotalCount><t:ChildFolderCount>{children}</t:ChildFolderCount>"
            f"<t:UnreadCount>{unread}</t:UnreadCount></t:{tag}>"
        )

    def _op_GetFolder(self, request: Element) -> str:
        messages = []
        for ref in _required(request.find(f"{M}FolderIds")):
            folder = self._folder_for(ref)
            if folder is None:
                messages.append(
                    _error(
                        "GetFolder",
                        "ErrorFolderNotFound",
                        "The specified folder could not be found.",
                    )
                )
                continue
            messages.append(
                _success("GetFolder", f"<m:Folders>{self._folder_xml(folder)}</m:Folders>")
            )
        return _response("GetFolder", messages)

    def _op_FindFolder(self, request: Element) -> str:
        wanted: str | None = None
        for constant in request.iter(f"{T}Constant"):
            wanted = constant.get("Value")
        messages = []
        for ref in _required(request.find(f"{M}ParentFolderIds")):
            parent = self._folder_for(ref)
            if parent is None:
                messages.append(
                    _error(
                        "FindFolder",
                        "ErrorFolderNotFound",
                        "The specified folder could not be found.",
                    )
                )
                continue
            found = [
                f
                for f in self.folders.values()
                if f.parent == parent.id and (wanted is None or f.name.lower() == wanted.lower())
            ]
            body = "".join(self._folder_xml(f) for f in found)
            messages.append(
                _success(
                    "FindFolder",
                    f'<m:RootFolder TotalItemsInView="{len(found)}" IncludesLastItemInRange="true">'
                    f"<t:Folders>{body}</t:Folders></m:RootFolder>",
                )
            )
        return _response("FindFolder", messages)

    def _sync_state(self, seq: int) -> str:
        return base64.b64encode(f"sgtest:{self.generation}:{seq}".encode()).decode()

    def _parse_sync_state(self, text: str | None) -> int | None:
        if not text:
            return 0
        try:
            tag, generation, seq = base64.b64decode(text, validate=True).decode().split(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        if tag != "sgtest" or int(generation) != self.generation:
            return None
        return int(seq)

    def _op_SyncFolderItems(self, request: Element) -> str:
        folder = self._folder_for(_required(_required(request.find(f"{M}SyncFolderId"))[0]))
        if folder is None:
            return _response(
                "SyncFolderItems",
                [
                    _error(
                        "SyncFolderItems", "ErrorFolderNotFound", "The folder could not be found."
                    )
                ],
            )
        state_elem = request.find(f"{M}SyncState")
        state = state_elem.text if state_elem is not None else None
        self.sync_states_seen.append(state)
        after = self._parse_sync_state(state)
        if after is None:
            return _response(
                "SyncFolderItems",
                [
                    # Exchange's documented shape: an empty SyncState even on this error.
                    _error(
                        "SyncFolderItems",
                        "ErrorInvalidSyncStateData",
                        "Synchronization state data is corrupt or otherwise invalid.",
                        "<m:SyncState />"
                        "<m:IncludesLastItemInRange>true</m:IncludesLastItemInRange>",
                    )
                ],
            )
        limit = int(_required(request.find(f"{M}MaxChangesReturned")).text or "100")
        fields = {uri.get("FieldURI") for uri in request.iter(f"{T}FieldURI")}
        pending = [c for c in self.changes if c.seq > after and c.folder == folder.id]
        page = pending[:limit]
        parts = []
        for change in page:
            item = self.items.get(change.item_id)
            if change.kind == "create":
                if item is None or item.folder != folder.id:
                    continue  # created and gone again since the state: Exchange reports nothing
                extra = ""
                if "item:DateTimeReceived" in fields:
                    extra += f"<t:DateTimeReceived>{_when(item.received)}</t:DateTimeReceived>"
                if "message:IsRead" in fields:
                    extra += f"<t:IsRead>{str(item.is_read).lower()}</t:IsRead>"
                parts.append(
                    f'<t:Create><t:Message><t:ItemId Id="{item.id}" ChangeKey="{item.changekey}"/>'
                    f"{extra}</t:Message></t:Create>"
                )
            elif change.kind == "read":
                parts.append(
                    f'<t:ReadFlagChange><t:ItemId Id="{change.item_id}" ChangeKey="AQAAAA=="/>'
                    "<t:IsRead>true</t:IsRead></t:ReadFlagChange>"
                )
            else:
                parts.append(
                    f'<t:Delete><t:ItemId Id="{change.item_id}" ChangeKey="AQAAAA=="/></t:Delete>'
                )
        last = page[-1].seq if page else after
        done = len(page) == len(pending)
        return _response(
            "SyncFolderItems",
            [
                _success(
                    "SyncFolderItems",
                    f"<m:SyncState>{self._sync_state(last)}</m:SyncState>"
                    f"<m:IncludesLastItemInRange>{str(done).lower()}</m:IncludesLastItemInRange>"
                    f"<m:Changes>{''.join(parts)}</m:Changes>",
                )
            ],
        )

    def _op_GetItem(self, request: Element) -> str:
        fields = {uri.get("FieldURI") for uri in request.iter(f"{T}FieldURI")}
        messages = []
        for ref in _required(request.find(f"{M}ItemIds")):
            item = self.items.get(ref.get("Id", ""))
            if item is None:
                messages.append(
                    _error(
                        "GetItem",
                        "ErrorItemNotFound",
                        "The specified object was not found in the store.",
                    )
                )
                continue
            self.events.append(("GetItem", item.id))
            extra = ""
            if "item:MimeContent" in fields:
                encoded = base64.b64encode(item.mime).decode()
                extra += f'<t:MimeContent CharacterSet="UTF-8">{encoded}</t:MimeContent>'
            if "message:IsRead" in fields:
                extra += f"<t:IsRead>{str(item.is_read).lower()}</t:IsRead>"
            messages.append(
                _success(
                    "GetItem",
                    f'<m:Items><t:Message><t:ItemId Id="{item.id}" ChangeKey="{item.changekey}"/>'
                    f"{extra}</t:Message></m:Items>",
                )
            )
        return _response("GetItem", messages)

    def _op_UpdateItem(self, request: Element) -> str:
        messages = []
        for change in _required(request.find(f"{M}ItemChanges")):
            ref = _required(change.find(f"{T}ItemId"))
            item = self.items.get(ref.get("Id", ""))
            if item is None:
                messages.append(
                    _error(
                        "UpdateItem",
                        "ErrorItemNotFound",
                        "The specified object was not found in the store.",
                    )
                )
                continue
            for field in change.iter(f"{T}SetItemField"):
                uri = _required(field.find(f"{T}FieldURI")).get("FieldURI")
                value = field.find(f".//{T}IsRead")
                if uri == "message:IsRead" and value is not None:
                    item.is_read = value.text in ("true", "1")
                    item.changekey = item.changekey[:-4] + f"{next(self._ids):04d}"
                    self.events.append(("UpdateItem", f"{item.id} IsRead={value.text}"))
                    self._change("read", item.id, item.folder)
            messages.append(
                _success(
                    "UpdateItem",
                    f'<m:Items><t:Message><t:ItemId Id="{item.id}" ChangeKey="{item.changekey}"/>'
                    "</t:Message></m:Items><m:ConflictResults><t:Count>0</t:Count></m:ConflictResults>",
                )
            )
        return _response("UpdateItem", messages)

    def _op_MoveItem(self, request: Element) -> str:
        target = self._folder_for(_required(_required(request.find(f"{M}ToFolderId"))[0]))
        messages = []
        for ref in _required(request.find(f"{M}ItemIds")):
            item = self.items.get(ref.get("Id", ""))
            if item is None or target is None:
                messages.append(
                    _error(
                        "MoveItem",
                        "ErrorItemNotFound",
                        "The specified object was not found in the store.",
                    )
                )
                continue
            # A move gives the item a new id, as Exchange does.
            del self.items[item.id]
            self._change("delete", item.id, item.folder)
            self.events.append(("MoveItem", item.id))
            item.id = base64.b64encode(
                f"sgtest-moved-{next(self._ids):04d}-{'y' * 24}".encode()
            ).decode()
            item.folder = target.id
            self.items[item.id] = item
            self._change("create", item.id, target.id)
            messages.append(
                _success(
                    "MoveItem",
                    f'<m:Items><t:Message><t:ItemId Id="{item.id}" ChangeKey="{item.changekey}"/>'
                    "</t:Message></m:Items>",
                )
            )
        return _response("MoveItem", messages)


class _Handler(http.server.BaseHTTPRequestHandler):
    ews: EwsServer
    server_version = "Microsoft-IIS/10.0"
    sys_version = ""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        data = self.rfile.read(length)
        expected = base64.b64encode(f"{self.ews.username}:{self.ews.password}".encode()).decode()
        if self.headers.get("Authorization") != f"Basic {expected}":
            self._send(401, b"", {"WWW-Authenticate": 'Basic realm="127.0.0.1"'})
            return
        with self.ews.lock:
            self.ews.requests.append(data)
        envelope = fromstring(data)
        body = _required(envelope.find(f"{{{SOAP}}}Body"))
        status, answer = self.ews.handle(body[0])
        xml = (
            '<?xml version="1.0" encoding="utf-8"?>'
            f'<s:Envelope xmlns:s="{SOAP}"><s:Header>{VERSION_HEADER}</s:Header>'
            '<s:Body xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
            ' xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
            f"{answer}</s:Body></s:Envelope>"
        )
        self._send(status, xml.encode(), {"Content-Type": "text/xml; charset=utf-8"})

    def _send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _required(elem: Element | None) -> Element:
    assert elem is not None, "request is missing an element the test server expects"
    return elem


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _response(operation: str, messages: list[str]) -> str:
    return (
        f'<m:{operation}Response xmlns:m="{MESSAGES}" xmlns:t="{TYPES}">'
        f"<m:ResponseMessages>{''.join(messages)}</m:ResponseMessages></m:{operation}Response>"
    )


def _success(operation: str, inner: str) -> str:
    return (
        f'<m:{operation}ResponseMessage ResponseClass="Success">'
        f"<m:ResponseCode>NoError</m:ResponseCode>{inner}</m:{operation}ResponseMessage>"
    )


def _error(operation: str, code: str, text: str, extra: str = "") -> str:
    return (
        f'<m:{operation}ResponseMessage ResponseClass="Error">'
        f"<m:MessageText>{escape(text)}</m:MessageText><m:ResponseCode>{code}</m:ResponseCode>"
        f"<m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>{extra}</m:{operation}ResponseMessage>"
    )


_FAULT_TEXT = {
    "ErrorServerBusy": "The server cannot service this request right now. Try again later.",
    "ErrorInvalidRequest": "The request is invalid.",
}


def _fault(code: str) -> str:
    """A SOAP fault as Exchange sends one (with HTTP 500)."""
    text = escape(_FAULT_TEXT.get(code, code))
    errors = "http://schemas.microsoft.com/exchange/services/2006/errors"
    back_off = (
        f'<t:MessageXml xmlns:t="{TYPES}"><t:Value Name="BackOffMilliseconds">50</t:Value>'
        "</t:MessageXml>"
        if code == "ErrorServerBusy"
        else ""
    )
    return (
        f'<s:Fault><faultcode xmlns:a="{TYPES}">a:{code}</faultcode>'
        f'<faultstring xml:lang="en-US">{text}</faultstring><detail>'
        f'<e:ResponseCode xmlns:e="{errors}">{code}</e:ResponseCode>'
        f'<e:Message xmlns:e="{errors}">{text}</e:Message>{back_off}</detail></s:Fault>'
    )


class _HttpServer(http.server.ThreadingHTTPServer):
    daemon_threads = False  # so server_close() waits for every request thread
    block_on_close = True
    errors: list[BaseException]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that refuses our certificate, or hangs up: keep it, quietly, for the test.
        self.errors.append(sys.exc_info()[1] or RuntimeError("unknown handler error"))
