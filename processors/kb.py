"""A knowledge base of vetted answers: read, indexed, searched, and composed into replies.

Sources a team already has:

- a folder of Markdown files, each with YAML front matter (``title``, ``categories``,
  ``questions`` it answers, ``promises`` it may make, ``language``) and the answer below;
- one YAML file with a list of the same entries (``text`` holds the answer);
- a CSV or JSON-lines file of answered tickets (question and answer columns): every
  answer an agent sent becomes an entry, its ticket the question it answers.

An answer may hold slots, ``{customer_name}``, ``{company}``, ``{support_address}``,
``{support_phone}``, ``{website}``, ``{reference}``, ``{amount}``: filled from the email's
extracted items and the company's settings when a reply is composed; an answer whose slot
cannot be filled is not used for that email.

Search scores an email against each answer's questions (or title) and its text, with
TF-IDF and WordLlama embeddings (weights in the wheel); the score, 0..1, is the relevance
a reply built on the answer has. On the support tickets, embeddings raised ROUGE-L of the
nearest answer against the agents' from 0.282 to 0.297 (60% most relevant of a 25% split).
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from processors.errors import Rejected

SLOTS = (
    "customer_name",
    "company",
    "support_address",
    "support_phone",
    "website",
    "reference",
    "amount",
)
#: Placeholders of exported tickets, as slots (PII masking of helpdesk exports).
PLACEHOLDERS = {
    r"<name>|\[name\]|<customer_name>|\{\{name\}\}": "{customer_name}",
    r"<tel_num>|\[phone\]|<phone>": "{support_phone}",
    r"<email>|\[email\]|<email_address>": "{support_address}",
    r"<acc_num>|\[account\]|<account_number>": "{reference}",
    r"<company>|\[company\]": "{company}",
}
GREETING = re.compile(
    r"^\s*(?:dear|hello|hi|hey|greetings|good (?:morning|afternoon))\b[^\n,]*,\s*", re.I
)
QUESTION_WEIGHT, ANSWER_WEIGHT, EMBEDDING_WEIGHT = 1.0, 0.5, 1.0
NORMALISER = (QUESTION_WEIGHT + ANSWER_WEIGHT) * (1 + EMBEDDING_WEIGHT)


class KnowledgeError(Rejected):
    """A knowledge base that cannot be read, with the file and what is wrong."""


@dataclass(frozen=True)
class Answer:
    id: str
    title: str
    text: str
    categories: tuple[str, ...] = ()
    questions: tuple[str, ...] = ()
    promises: tuple[str, ...] = ()
    language: str = "en"

    @property
    def slots(self) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(self.text) if name}

    def fill(self, values: Mapping[str, str]) -> str | None:
        """The text with its slots filled; None when a slot has no value."""
        if not self.slots <= {k for k, v in values.items() if v}:
            return None
        return self.text.format_map(dict(values))


def _entry(data: Mapping[str, Any], *, where: str, default_id: str) -> Answer:
    if not isinstance(data, Mapping):
        raise KnowledgeError(f"{where}: an entry must be a mapping of fields")
    known = {"id", "title", "text", "categories", "questions", "promises", "language"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise KnowledgeError(f"{where}: unknown fields {unknown}; fields: {sorted(known)}")
    text = str(data.get("text") or "").strip()
    if not text:
        raise KnowledgeError(f"{where}: the answer text is empty")

    def strings(name: str) -> tuple[str, ...]:
        value = data.get(name) or ()
        if isinstance(value, str):
            value = (value,)
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise KnowledgeError(f"{where}: {name} must be a list of strings")
        return tuple(v.strip() for v in value if v.strip())

    answer = Answer(
        id=str(data.get("id") or default_id),
        title=str(data.get("title") or default_id),
        text=text,
        categories=strings("categories"),
        questions=strings("questions"),
        promises=strings("promises"),
        language=str(data.get("language") or "en"),
    )
    try:
        bad = sorted(answer.slots - set(SLOTS))
    except ValueError as exc:  # an unbalanced brace
        raise KnowledgeError(f"{where}: {exc} (write {{{{ for a brace)") from exc
    if bad:
        raise KnowledgeError(f"{where}: unknown slots {bad}; slots: {', '.join(SLOTS)}")
    return answer


def read_markdown(folder: Path) -> list[Answer]:
    import yaml

    answers = []
    for path in sorted(folder.rglob("*.md")):
        text = path.read_text("utf-8")
        meta: Any = {}
        if text.startswith("---"):
            head, sep, body = text[3:].partition("\n---")
            if not sep:
                raise KnowledgeError(f"{path}: front matter is not closed with ---")
            try:
                meta = yaml.safe_load(head) or {}
            except yaml.YAMLError as exc:
                raise KnowledgeError(f"{path}: front matter is not YAML: {exc}") from exc
            text = body.partition("\n")[2]
        if not isinstance(meta, dict):
            raise KnowledgeError(f"{path}: front matter must be a mapping")
        answers.append(_entry({**meta, "text": text}, where=str(path), default_id=path.stem))
    return answers


def read_yaml(path: Path) -> list[Answer]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text("utf-8"))
    except yaml.YAMLError as exc:
        raise KnowledgeError(f"{path}: not YAML: {exc}") from exc
    entries = data.get("answers") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise KnowledgeError(f"{path}: expected a list of answers (or answers: [...])")
    return [
        _entry(e, where=f"{path}: entry {n + 1}", default_id=f"{path.stem}-{n + 1}")
        for n, e in enumerate(entries)
    ]


def as_slots(text: str) -> str:
    """An exported ticket's answer as a vetted answer: braces escaped, masking placeholders
    as slots, its own greeting dropped (the reply has one)."""
    text = text.replace("{", "{{").replace("}", "}}")
    for pattern, slot in PLACEHOLDERS.items():
        text = re.sub(pattern, slot, text, flags=re.I)
    return GREETING.sub("", text, count=1).strip()


def read_tickets(
    path: Path, *, question: str = "question", answer: str = "answer", category: str = ""
) -> list[Answer]:
    """Answered tickets as entries; ``question`` may name several columns (``subject,body``)."""
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        try:
            rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]
        except json.JSONDecodeError as exc:
            raise KnowledgeError(f"{path}: line {exc.lineno} is not JSON") from exc
    else:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    if not rows:
        raise KnowledgeError(f"{path}: no rows")
    columns = [c.strip() for c in question.split(",") if c.strip()]
    wanted = [*columns, answer, *([category] if category else [])]
    missing = [c for c in wanted if c not in rows[0]]
    if missing:
        raise KnowledgeError(
            f"{path}: no column {', '.join(missing)}; columns: {', '.join(sorted(rows[0]))}"
        )
    answers = []
    for n, row in enumerate(rows):
        asked = "\n".join(str(row[c] or "").strip() for c in columns).strip()
        said = as_slots(str(row[answer] or ""))
        if not asked or len(said.split()) < 5:
            continue
        label = str(row[category] or "").strip() if category else ""
        answers.append(
            Answer(
                id=f"{path.stem}-{n + 1}",
                title=asked.splitlines()[0][:80],
                text=said,
                categories=(label,) if label else (),
                questions=(asked,),
            )
        )
    if not answers:
        raise KnowledgeError(f"{path}: no row has both a question and an answer")
    return answers


def read_source(
    path: Path, *, question: str = "question", answer: str = "answer", category: str = ""
) -> list[Answer]:
    """Entries from a Markdown folder, a YAML file, or a CSV/JSON-lines file of tickets."""
    if not path.exists():
        raise KnowledgeError(f"{path}: no such file or folder (the knowledge base)")
    if path.is_dir():
        answers = read_markdown(path)
    elif path.suffix.lower() in (".yaml", ".yml"):
        answers = read_yaml(path)
    elif path.suffix.lower() in (".csv", ".jsonl", ".ndjson", ".json"):
        answers = read_tickets(path, question=question, answer=answer, category=category)
    else:
        raise KnowledgeError(f"{path}: a knowledge base is a folder, .yaml, .csv or .jsonl")
    if not answers:
        raise KnowledgeError(f"{path}: no answers")
    ids = [a.id for a in answers]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise KnowledgeError(f"{path}: answer ids used twice: {', '.join(twice[:5])}")
    return answers


def fingerprint(answers: Sequence[Answer]) -> str:
    digest = hashlib.sha256()
    for a in answers:
        digest.update(json.dumps(a.__dict__, sort_keys=True, default=list).encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Hit:
    answer: Answer
    relevance: float  # 0..1


@dataclass
class Index:
    """Answers and their vectors; ``search`` ranks them for an email."""

    answers: list[Answer]
    id: str = ""
    vectorizer: Any = field(default=None, repr=False)
    owners: Any = field(default=None, repr=False)  # question row -> answer number
    questions: Any = field(default=None, repr=False)
    texts: Any = field(default=None, repr=False)
    question_vectors: Any = field(default=None, repr=False)
    text_vectors: Any = field(default=None, repr=False)

    @classmethod
    def build(cls, answers: Sequence[Answer]) -> Index:
        import numpy as np
        from sklearn.feature_extraction.text import TfidfVectorizer

        answers = list(answers)
        asked, owners = [], []
        for n, a in enumerate(answers):
            for q in a.questions or (a.title,):
                asked.append(q)
                owners.append(n)
        said = [a.text for a in answers]
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, stop_words="english")
        vectorizer.fit(asked + said)
        return cls(
            answers,
            fingerprint(answers),
            vectorizer,
            np.array(owners),
            vectorizer.transform(asked),
            vectorizer.transform(said),
            _embed(asked),
            _embed(said),
        )

    def get(self, ident: str) -> Answer | None:
        for a in self.answers:
            if a.id == ident:
                return a
        return None

    def search(self, text: str, *, k: int = 5, languages: Iterable[str] | None = None) -> list[Hit]:
        """The ``k`` most relevant answers (in ``languages``, if given), best first."""
        return self.search_many([text], k=k, languages=languages)[0]

    def search_many(
        self, texts: Sequence[str], *, k: int = 5, languages: Iterable[str] | None = None
    ) -> list[list[Hit]]:
        import numpy as np

        if not texts:
            return []
        query = self.vectorizer.transform(list(texts))
        embedded = _embed(list(texts))
        by_question = (query @ self.questions.T).toarray() * QUESTION_WEIGHT
        by_question += embedded @ self.question_vectors.T * EMBEDDING_WEIGHT * QUESTION_WEIGHT
        by_text = (query @ self.texts.T).toarray() * ANSWER_WEIGHT
        by_text += embedded @ self.text_vectors.T * EMBEDDING_WEIGHT * ANSWER_WEIGHT
        # Each answer scores with its best question.
        best = np.full((len(texts), len(self.answers)), -np.inf)
        np.maximum.at(best.T, self.owners, by_question.T)
        scores = (best + by_text) / NORMALISER
        if languages is not None:
            allowed = set(languages)
            scores[:, [a.language not in allowed for a in self.answers]] = -np.inf
        results = []
        for row in scores:
            top = np.argsort(-row)[:k]
            results.append(
                [
                    Hit(self.answers[i], round(float(max(row[i], 0.0)), 4))
                    for i in top
                    if np.isfinite(row[i])
                ]
            )
        return results


def _embed(texts: list[str]) -> Any:
    import numpy as np

    from processors.textmodel import wordllama

    vectors = np.asarray(wordllama().embed(texts), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


def compose(body: str, *, customer_name: str, greeting: str, anonymous: str, sign_off: str) -> str:
    """A reply: the brand's greeting, the answer, the brand's sign-off."""
    hello = greeting.format(customer_name=customer_name) if customer_name else anonymous
    return f"{hello}\n\n{body.strip()}\n\n{sign_off.strip()}"
