"""What code checks in a drafted reply before it may be sent (OWASP LLM01, 02, 06, 10).

A model's answer is untrusted output: an email may have told it to print its instructions,
add a link, promise money or answer in another language. ``check_reply`` lists every such
finding; a reply with any is never sent, it goes to a person with what was found:

- the per-call canary token of the prompt, or a long run of the prompt's own words;
- a link, email address or phone number that is neither in the customer's email nor in
  the allow list;
- an amount the email does not state, or a refund or credit over the policy's limit;
- a claim that something was done (refunded, closed, approved): no model takes actions;
- a language other than the email's.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email.utils import getaddresses
from typing import Any

from processors.language import detect

#: A link: a scheme or "www." and what follows, or a host name whose last label is a
#: top-level domain (``top_level``). Host labels are at most 63 characters and a name at
#: most 127 of them (RFC 1035), local parts at most 64 (RFC 5321): the bounds keep each
#: start's scan short, where unbounded runs made a reply of "a.a.a..." or "a-a-a-..."
#: quadratic (8,000 characters: 4.7 s); what is longer names no host that resolves.
#: The pattern finds every name that may be one (its last label letters of any script,
#: or punycode); ``links`` keeps those that end in a delegated top-level domain.
LAST_LABEL = r"(?:[^\W\d_]{2,63}|xn--[a-z0-9-]{1,59})"
SCHEME = r"(?:(?:https?|ftp)://|www\.)"
URL = re.compile(
    rf"\b{SCHEME}[^\s<>()\"']+"
    rf"|\b(?:[\w-]{{1,63}}\.){{1,127}}{LAST_LABEL}"
    r"\b(?:/[^\s<>()\"']*)?",
    re.IGNORECASE,
)
_SCHEME = re.compile(SCHEME, re.IGNORECASE)


@functools.cache
def _suffixes() -> Any:
    from publicsuffixlist import PublicSuffixList

    # the list inside the wheel; an unknown last label is no top-level domain
    return PublicSuffixList(accept_unknown=False)


@functools.lru_cache(maxsize=4096)
def top_level(label: str) -> bool:
    """True when ``label`` is a top-level domain of the Public Suffix List (its ICANN
    section: every delegated one, ``com`` to ``photography``, ``zip`` and ``рф``; not
    ``txt``, ``json`` or the reserved ``example``, ``test`` and ``invalid``)."""
    return bool(_suffixes().is_public(label.lower()))


def links(text: str) -> Iterator[tuple[tuple[int, int], str]]:
    """Where ``text`` names a link, and what it names: with a scheme or "www." anything,
    else a host name that ends in a top-level domain. A name that does not is read up
    to its last label that is one, as a person reads "evil.com.Thanks" (a file name such
    as "notes.draft.txt" names none)."""
    for match in URL.finditer(text):
        found = match.group()
        if _SCHEME.match(found):
            yield match.span(), found
            continue
        labels = found.split("/", 1)[0].split(".")
        if top_level(labels[-1]):
            yield match.span(), found
            continue
        while len(labels) > 2:
            labels.pop()
            if top_level(labels[-1]):
                name = ".".join(labels)
                yield (match.start(), match.start() + len(name)), name
                break


EMAIL = re.compile(r"[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,126}")
PHONE = re.compile(r"(?<![\w.])\+?\(?\d[\d ()./-]{6,}\d(?!\w|\.\d)")
AMOUNT = re.compile(
    r"(?P<pre>[$€£¥]|\b(?:USD|EUR|GBP|CHF)\s?)?(?P<num>\d{1,3}(?:[,.\s]\d{3})*(?:[.,]\d{1,2})?|\d+)"
    r"(?P<post>\s?(?:USD|EUR|GBP|CHF|dollars?|euros?|pounds?)\b|\s?[$€£])?",
    re.IGNORECASE,
)
PROMISE = re.compile(
    r"\b(refund\w*|credit\w*|reimburs\w*|compensat\w*|pay(?:ing)? you|waive\w*|"
    r"rembours\w*|erstatt\w*|reembols\w*|rimbors\w*)\b",
    re.IGNORECASE,
)
#: A reply may say what a person will do, never that something was done: no model acts.
ACTION_CLAIM = re.compile(
    r"\b(?:(?:has|have) been|is now|are now|was|were)\s+(?:\w+\s+)?"
    r"(?:refunded|closed|deleted|cancel+ed|resolved|approved|credited|reset|unlocked|"
    r"changed|transferred|waived)\b"
    r"|\bwe(?:'ve| have)\s+(?:\w+\s+)?(?:refunded|closed|deleted|cancel+ed|approved|"
    r"credited|transferred|waived)\b",
    re.IGNORECASE,
)
OVERLAP_WORDS = 12
#: what no reader sees: zero-width spaces and joiners, the soft hyphen, word joiners, the
#: byte-order mark, tag characters. The checks read the text without them
#: ("claims-portal\u200b.com" is a link to whoever reads it).
INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f"
    "\u200b-\u200f\u2060-\u2064\u206a-\u206f\ufe00-\ufe0f\ufeff"
    "\U000e0000-\U000e007f]"
)
#: what makes text read in another order than it is written ("\u202emoc.live" shows as
#: "evil.com"): never in a reply that is sent
REORDERING = re.compile("[\u202a-\u202e\u2066-\u2069]")
#: a link written so that filters miss it and people still follow it: claims[.]com
DEFANGED = re.compile(r"\s?[\[({<]\s?(?:\.|dot)\s?[\])}>]\s?", re.IGNORECASE)


def as_read(text: str) -> str:
    """``text`` as a person reads it: full-width and other compatibility forms as the
    characters they show (a full-width "evil.com" is evil.com), invisible characters out,
    defanged dots as dots."""
    text = unicodedata.normalize("NFKC", text)
    return DEFANGED.sub(".", INVISIBLE.sub("", text))


@dataclass(frozen=True)
class ReplyPolicy:
    refund_limit: float = 500.0
    #: domains, addresses and phone numbers a reply may name although the email does not
    allowed: tuple[str, ...] = ()


def check_reply(
    reply: str,
    *,
    email_text: str,
    policy: ReplyPolicy = ReplyPolicy(),
    canary: str = "",
    instructions: str = "",
    vetted: Iterable[str] = (),
) -> list[str]:
    """Every reason ``reply`` must not be sent; empty when it may be. ``vetted``: the
    answers a person wrote that the reply is built on; what they say (a link, an amount,
    "if your loan was transferred") counts as said."""
    findings: list[str] = []
    if REORDERING.search(reply):
        findings.append("it holds characters that show text in another order than written")
    reply, email_text = as_read(reply), as_read(email_text)
    vetted = [as_read(v) for v in vetted]
    vetted_text = "\n".join(vetted)
    language_of_email = email_text
    email_text = f"{email_text}\n{vetted_text}"
    lowered_email = email_text.lower()
    allowed = [a.lower() for a in policy.allowed]
    if canary and canary in reply:
        findings.append("it repeats its prompt's canary token")
    if instructions and (run := longest_shared_run(reply, instructions)) >= OVERLAP_WORDS:
        findings.append(f"it repeats {run} words of its instructions in a row")
    for _, url in links(reply):
        url = url.rstrip(".,;:!?")  # the end of a sentence is not part of a link
        host = re.sub(r"^(?:[a-z]+://)?(?:www\.)?", "", url.lower()).split("/")[0]
        if host not in lowered_email and not _allowed(host, allowed):
            findings.append(f"a link the email does not contain: {url[:80]}")
    for address in EMAIL.findall(reply) if "@" in reply else ():  # each has an @
        if address.lower() not in lowered_email and not _allowed(address.lower(), allowed):
            findings.append(f"an email address the email does not contain: {address}")
    email_digits = {_digits(p) for p in PHONE.findall(email_text)}
    email_digits |= {_digits(a) for a in allowed if len(_digits(a)) >= 7}
    for phone in PHONE.findall(reply):
        digits = _digits(phone)
        if len(digits) >= 7 and digits not in email_digits and not _allowed(digits, allowed):
            findings.append(f"a phone number the email does not contain: {phone.strip()}")
    stated = set(amounts(email_text))
    for value, text, money in _amounts_in(reply):
        if not money:
            continue
        if value not in stated:
            findings.append(f"an amount the email does not state: {text.strip()}")
        elif value > policy.refund_limit and PROMISE.search(reply):
            findings.append(f"it promises {text.strip()}, over the {policy.refund_limit:g} limit")
    claims = [c.group() for c in ACTION_CLAIM.finditer(reply)]
    claims = [c for c in claims if c.lower() not in vetted_text.lower()]
    if claims:
        findings.append(f"it claims an action no one took: {claims[0]!r}")
    wrote, asked = detect(reply), detect(language_of_email)
    if wrote and asked and wrote != asked:
        findings.append(f"it answers in {wrote}, the email is in {asked}")
    return findings


def address_problem(sender: str) -> str | None:
    """Why ``sender`` cannot be a reply's one recipient, or None: it must name exactly one
    address, and hold no line break (``a@x.com\r\nBcc: b@y.com`` would add a header to
    whatever sends the reply) nor any other control character."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in sender):
        return "the sender holds a line break or a control character"
    found = [address for _, address in getaddresses([sender]) if address]
    if len(found) != 1:
        return f"the sender names {len(found)} addresses, not one"
    local, at, domain = found[0].rpartition("@")
    if not (local and at and domain):
        return f"the sender {found[0][:80]!r} is not an address"
    return None


def amounts(text: str) -> list[float]:
    """The money amounts ``text`` states (with a currency sign or code)."""
    return [value for value, _, money in _amounts_in(text) if money]


_DIGIT = re.compile(r"\d")
#: The longest text before an amount's first digit: a currency code and one space.
_PRE_MAX = len("USD ")


def _amount_matches(text: str) -> Iterator[re.Match[str]]:
    """``AMOUNT.finditer(text)``, searched only near digits: every match has one at most
    ``_PRE_MAX`` characters after its start, and one starts at a digit at the latest (its
    number alone), so no position further from the next digit can start a match. The
    pattern tried at every position of an email was most of a reply check's time."""
    pos = 0
    while (digit := _DIGIT.search(text, pos)) is not None:
        match = AMOUNT.search(text, max(pos, digit.start() - _PRE_MAX))
        if match is None:  # cannot happen (the digit itself is a number); as finditer
            return
        yield match
        pos = match.end()


def _amounts_in(text: str) -> Iterable[tuple[float, str, bool]]:
    for match in _amount_matches(text):
        value = _number(match["num"])
        if value is None:
            continue
        yield value, match.group(), bool(match["pre"] or match["post"])


def _number(text: str) -> float | None:
    """``1,234.50``, ``1.234,50``, ``5 000`` and ``49`` as numbers."""
    text = text.replace(" ", "")
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?", text):
        text = text.replace(",", "")
    elif re.fullmatch(r"\d{1,3}(?:\.\d{3})+(?:,\d{1,2})?", text):
        text = text.replace(".", "").replace(",", ".")
    else:
        text = text.replace(",", ".")
    try:
        return float(text)
    except ValueError:
        return None


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _allowed(value: str, allowed: list[str]) -> bool:
    return any(value == a or value.endswith("." + a) or value.endswith("@" + a) for a in allowed)


def longest_shared_run(text: str, source: str) -> int:
    """The most words in a row that ``text`` shares with ``source``."""
    words = re.findall(r"\w+", text.lower())
    source_words = re.findall(r"\w+", source.lower())
    if not words or not source_words:
        return 0
    grams = {tuple(source_words[i : i + OVERLAP_WORDS]) for i in range(len(source_words))}
    best = 0
    run = 0
    for i in range(len(words) - OVERLAP_WORDS + 1):
        if tuple(words[i : i + OVERLAP_WORDS]) in grams:
            run = run + 1 if run else OVERLAP_WORDS
            best = max(best, run)
        else:
            run = 0
    return best
