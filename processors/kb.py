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

A knowledge base of answered tickets also teaches the order of the best few candidates: at
index time each ticket asks for its own answer among the others', and a gradient-boosted
regressor learns, from the match scores, how close (ROUGE-L) each candidate's answer comes
to the one the agent sent. On the same split this raised ROUGE-L at 70% answered from 0.287
to 0.299. The relevance a hit carries stays its match score.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from processors.errors import Rejected
from processors.tables import JSON_LINES, columns, field_text, present, read_table
from topics.codec import encodable

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
    r"(?<=dear )(?:<name>|\[(?:your |customer |customer's |recipient's )?name\])": (
        "{customer_name}"
    ),
    r"<name>|\[name\]|<customer_name>|\[customer(?: name)?\]|\{\{name\}\}": "{customer_name}",
    r"<tel_num>|\[(?:your )?(?:tel[ _]?num(?:ber)?|phone(?: number)?|telephone_number)\]"
    r"|<phone>|\{\{tel_num\}\}": "{support_phone}",
    r"<email>|\[email(?: address)?\]|<email_address>": "{support_address}",
    r"<acc_num>|<ref_num>|\[(?:acc_num|account(?:[ _]number)?)\]": "{reference}",
    r"<company>|<organization>|\[company(?: name)?\]|\[(?:your|support team|assistant|support)"
    r" (?:name|member)\]": "{company}",
    r"<br\s*/?>": "\n",
}
GREETING = re.compile(
    r"^\s*(?:dear|hello|hi|hey|greetings|good (?:morning|afternoon))\b[^\n,]*,\s*", re.I
)
QUESTION_WEIGHT, ANSWER_WEIGHT, EMBEDDING_WEIGHT = 1.0, 0.5, 1.0
NORMALISER = (QUESTION_WEIGHT + ANSWER_WEIGHT) * (1 + EMBEDDING_WEIGHT)
CANDIDATES = 10  # the reranker orders this many
RERANK_MIN = 50  # answers with questions needed to learn an order
TOKEN = re.compile(r"[a-z0-9]+")
SENTENCE = re.compile(r"(?<=[.!?])\s+")


class KnowledgeError(Rejected):
    """A knowledge base that cannot be read, with the file and what is wrong."""


def _slots(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def _check_slots(text: str, where: str) -> None:
    """Every ``{...}`` of an answer is a known slot, bare: a format spec or a conversion
    (``{amount:d}``, ``{company!r}``) would raise or print oddly when a reply is composed."""
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(text)]
    except ValueError as exc:  # an unbalanced brace
        raise KnowledgeError(f"{where}: {exc} (write {{{{ for a brace)") from exc
    for name, spec, conv in fields:
        if name is None:
            continue
        if name not in SLOTS:
            raise KnowledgeError(
                f"{where}: unknown slot {{{name}}}; slots: {', '.join(SLOTS)} "
                "(write {{ and }} for braces)"
            )
        if spec or conv:
            given = ("!" + conv if conv else "") + (":" + spec if spec else "")
            raise KnowledgeError(
                f"{where}: slot {{{name}}} has a format ({given}); write {{{name}}} alone"
            )


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
        return _slots(self.text)

    def fill(self, values: Mapping[str, str]) -> str | None:
        """The text with its slots filled. A sentence whose slot has no value is left out
        (an answer's "your account <acc_num> ..." to an email that names none); None when
        that would leave out half of the answer or more."""
        known = {k: v for k, v in values.items() if v}
        if self.slots <= set(known):
            return self.text.format_map(known)
        sentences = SENTENCE.split(self.text.strip())
        kept = [s for s in sentences if _slots(s) <= set(known)]
        if 2 * len(kept) <= len(sentences):
            return None
        return " ".join(s.format_map(known) for s in kept)


def _entry(data: Mapping[str, Any], *, where: str, default_id: str) -> Answer:
    if not isinstance(data, Mapping):
        raise KnowledgeError(f"{where}: an entry must be a mapping of fields")
    known = {"id", "title", "text", "categories", "questions", "promises", "language"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise KnowledgeError(f"{where}: unknown fields {unknown}; fields: {sorted(known)}")

    def scalar(name: str, default: str) -> str:
        value = data.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            # a list, a mapping (an alias of one may be huge), bytes: not text
            raise KnowledgeError(f"{where}: {name} must be text, not {type(value).__name__}")
        return str(value).strip() or default

    text = scalar("text", "")
    if not text:
        raise KnowledgeError(f"{where}: the answer text is empty")

    def strings(name: str) -> tuple[str, ...]:
        value = data.get(name) or ()
        if isinstance(value, str):
            value = (value,)
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise KnowledgeError(f"{where}: {name} must be a list of strings")
        return tuple(v.strip() for v in value if v.strip())

    _check_slots(text, where)
    return Answer(
        id=scalar("id", default_id),
        title=scalar("title", default_id),
        text=text,
        categories=strings("categories"),
        questions=strings("questions"),
        promises=strings("promises"),
        language=scalar("language", "en"),
    )


def _read_text(path: Path) -> str:
    """A knowledge-base file's text; a byte-order mark is read past."""
    try:
        return path.read_text("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise KnowledgeError(f"{path}: not UTF-8 text; save it as UTF-8") from exc
    except OSError as exc:  # unreadable, a dangling link, a link loop
        raise KnowledgeError(f"{path}: cannot be read: {exc.strerror or exc}") from exc


def _yaml(text: str, where: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    # nested past the stack, an integer past Python's 4,300 digits
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        raise KnowledgeError(f"{where} not YAML: {str(exc)[:200]}") from exc


def _markdown_files(folder: Path) -> list[Path]:
    """Every ``.md`` file under ``folder`` (any case), through linked folders, each once."""
    found, seen = [], set()

    def unreadable(exc: OSError) -> None:
        raise KnowledgeError(f"{exc.filename}: cannot be read: {exc.strerror or exc}") from exc

    for root, dirs, files in os.walk(folder, onerror=unreadable, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        found += [Path(root) / f for f in files if f.lower().endswith(".md")]
    return sorted(found)


def read_markdown(folder: Path) -> list[Answer]:
    answers = []
    for path in _markdown_files(folder):
        text = _read_text(path)
        meta: Any = {}
        if text.startswith("---"):
            head, sep, body = text[3:].partition("\n---")
            if not sep:
                raise KnowledgeError(f"{path}: front matter is not closed with ---")
            meta = _yaml(head, f"{path}: front matter is") or {}
            text = body.partition("\n")[2]
        if not isinstance(meta, dict):
            raise KnowledgeError(f"{path}: front matter must be a mapping")
        answers.append(_entry({**meta, "text": text}, where=str(path), default_id=path.stem))
    return answers


def read_yaml(path: Path) -> list[Answer]:
    data = _yaml(_read_text(path), f"{path}:")
    entries = data.get("answers") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise KnowledgeError(f"{path}: expected a list of answers (or answers: [...])")
    return [
        _entry(e, where=f"{path}: entry {n + 1}", default_id=f"{path.stem}-{n + 1}")
        for n, e in enumerate(entries)
    ]


def as_slots(text: str) -> str:
    """An exported ticket's answer as a vetted answer: braces escaped, the helpdesk's
    masking placeholders (``<name>``, ``[tel_num]``, ...) as slots."""
    text = text.replace("{", "{{").replace("}", "}}")
    for pattern, slot in PLACEHOLDERS.items():
        text = re.sub(pattern.replace("{{", "{").replace("}}", "}"), slot, text, flags=re.I)
    return text.strip()


def read_tickets(
    path: Path, *, question: str = "question", answer: str = "answer", category: str = ""
) -> list[Answer]:
    """Answered tickets as entries; ``question`` may name several columns (``subject,body``)."""
    rows = read_table(path, KnowledgeError)
    asked_in = columns(question)
    wanted = [*asked_in, answer, *([category] if category else [])]
    named = present(rows)
    missing = [c for c in wanted if c not in named]
    if missing:
        raise KnowledgeError(
            f"{path}: no column {', '.join(missing)}; columns: {', '.join(sorted(named))}"
        )
    answers = []
    for n, row in enumerate(rows):
        asked = "\n".join(field_text(row.get(c)) for c in asked_in).strip()
        said = as_slots(field_text(row.get(answer)))
        if not asked or len(said.split()) < 5:
            continue
        label = field_text(row.get(category)) if category else ""
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
    elif path.suffix.lower() in (".csv", *JSON_LINES):
        answers = read_tickets(path, question=question, answer=answer, category=category)
    else:
        raise KnowledgeError(f"{path}: a knowledge base is a folder, .yaml, .csv or .jsonl")
    if not answers:
        raise KnowledgeError(f"{path}: no answers")
    twice = sorted(i for i, n in Counter(a.id for a in answers).items() if n > 1)
    if twice:
        raise KnowledgeError(f"{path}: answer ids used twice: {', '.join(twice[:5])}")
    return answers


def fingerprint(answers: Sequence[Answer]) -> str:
    """Names an index: its answers, this module (how it indexes), scikit-learn's version."""
    import inspect
    import sys

    import sklearn

    digest = hashlib.sha256(inspect.getsource(sys.modules[__name__]).encode())
    digest.update(sklearn.__version__.encode())
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
    similar: Any = field(default=None, repr=False)  # answer x answer, TF-IDF cosine
    reranker: Any = field(default=None, repr=False)
    #: answered tickets: each one's relevance to its best *other* answer (held out)
    held_out: list[float] = field(default_factory=list, repr=False)

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
        try:
            vectorizer.fit(asked + said)
        except ValueError as exc:  # sklearn's "empty vocabulary"
            raise KnowledgeError(
                f"no word to search answers by in {len(answers)} answers (only stop words, "
                "one-letter words or symbols): add a title or questions to them"
            ) from exc
        texts = vectorizer.transform(said)
        index = cls(
            answers,
            fingerprint(answers),
            vectorizer,
            np.array(owners),
            vectorizer.transform(asked),
            texts,
            _embed(asked),
            _embed(said),
            (texts @ texts.T).toarray(),
        )
        index.reranker = index._learn_order()
        return index

    def floor_for(self, share: float) -> float | None:
        """The relevance floor at which ``share`` of the answered tickets would still find
        a vetted answer among the others' (None for a hand-written knowledge base)."""
        if not self.held_out:
            return None
        ranked = sorted(self.held_out, reverse=True)
        return ranked[min(len(ranked) - 1, int(share * len(ranked)))]

    def get(self, ident: str) -> Answer | None:
        for a in self.answers:
            if a.id == ident:
                return a
        return None

    def search(self, text: str, *, k: int = 5, languages: Iterable[str] | None = None) -> list[Hit]:
        """The ``k`` best answers (in ``languages``, if given), best first."""
        return self.search_many([text], k=k, languages=languages)[0]

    def search_many(
        self, texts: Sequence[str], *, k: int = 5, languages: Iterable[str] | None = None
    ) -> list[list[Hit]]:
        import numpy as np

        if not texts:
            return []
        texts = [encodable(str(t)) for t in texts]  # a lone surrogate breaks the embedding
        scores, every = self._scores(self.vectorizer.transform(list(texts)), _embed(list(texts)))
        if languages is not None:
            allowed = set(languages)
            scores[:, [a.language not in allowed for a in self.answers]] = -np.inf
        results = []
        for row, parts in zip(scores, every, strict=True):
            top = [int(i) for i in np.argsort(-row)[:CANDIDATES] if np.isfinite(row[i])]
            if self.reranker is not None and len(top) > 1:
                predicted = self.reranker.predict(self._features(row, parts, top))
                top = [top[i] for i in np.argsort(-predicted, kind="stable")]
            results.append(
                [Hit(self.answers[i], round(float(max(row[i], 0.0)), 4)) for i in top[:k]]
            )
        return results

    def _scores(self, query: Any, embedded: Any) -> tuple[Any, list[tuple[Any, ...]]]:
        """Relevance of every answer to every query (rows), 0..1, and its parts per row."""
        import numpy as np

        tfidf_q = (query @ self.questions.T).toarray()
        embed_q = embedded @ self.question_vectors.T
        by_question = (tfidf_q + embed_q * EMBEDDING_WEIGHT) * QUESTION_WEIGHT
        tfidf_a = (query @ self.texts.T).toarray()
        embed_a = embedded @ self.text_vectors.T
        by_text = (tfidf_a + embed_a * EMBEDDING_WEIGHT) * ANSWER_WEIGHT
        best = np.full((query.shape[0], len(self.answers)), -np.inf)
        np.maximum.at(best.T, self.owners, by_question.T)  # each answer: its best question
        tq = np.full_like(best, -np.inf)
        np.maximum.at(tq.T, self.owners, tfidf_q.T)
        eq = np.full_like(best, -np.inf)
        np.maximum.at(eq.T, self.owners, embed_q.T)
        parts = list(zip(tq, tfidf_a, eq, embed_a, strict=True))
        return (best + by_text) / NORMALISER, parts

    def _features(self, row: Any, parts: tuple[Any, ...], top: list[int]) -> Any:
        import numpy as np

        tq, ta, eq, ea = parts
        lengths = np.log([len(self.answers[i].text.split()) + 1 for i in top])
        central = self.similar[np.ix_(top, top)].mean(axis=1)
        first = row[top[0]]
        return np.column_stack(
            [
                row[top],
                tq[top],
                ta[top],
                eq[top],
                ea[top],
                np.arange(len(top)),
                central,
                lengths,
                np.full(len(top), first),
                row[top] - first,
            ]
        )

    def _learn_order(self) -> Any:
        """From answered tickets: which of the best candidates comes closest to the answer
        the agent sent. None for a hand-written knowledge base (or a small one)."""
        import numpy as np
        from sklearn.ensemble import HistGradientBoostingRegressor

        asked = [n for n, a in enumerate(self.answers) if a.questions]
        if len(asked) < RERANK_MIN:
            return None
        questions = [self.answers[n].questions[0] for n in asked]
        scores, every = self._scores(self.vectorizer.transform(questions), _embed(questions))
        rows, targets = [], []  # type: ignore[var-annotated]
        for own, row, parts in zip(asked, scores, every, strict=True):
            row[own] = -np.inf  # its own answer is not a candidate
            self.held_out.append(round(float(np.max(row)), 4))
            top = [int(i) for i in np.argsort(-row)[:CANDIDATES] if np.isfinite(row[i])]
            rows.append(self._features(row, parts, top))
            truth = self.answers[own].text
            targets.extend(rouge_l(self.answers[i].text, truth) for i in top)
        model = HistGradientBoostingRegressor(
            max_iter=200, learning_rate=0.05, max_leaf_nodes=15, random_state=0
        )
        return model.fit(np.vstack(rows), np.array(targets))


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 over lower-case word tokens (as the rouge-score package tokenizes)."""
    a, b = TOKEN.findall(candidate.lower()), TOKEN.findall(reference.lower())
    if not a or not b:
        return 0.0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    lcs = previous[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(a), lcs / len(b)
    return 2 * precision * recall / (precision + recall)


def _embed(texts: list[str]) -> Any:
    import numpy as np

    from processors.textmodel import wordllama

    vectors = np.asarray(wordllama().embed(texts), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


def compose(body: str, *, customer_name: str, greeting: str, anonymous: str, sign_off: str) -> str:
    """A reply: the brand's greeting (unless the answer opens with its own), the answer,
    the brand's sign-off; a brand without a greeting or sign-off sends the answer as it
    was written."""
    body = body.strip()
    hello = greeting.format(customer_name=customer_name) if customer_name else anonymous
    if GREETING.match(body):
        hello = ""
    return "\n\n".join(part for part in (hello.strip(), body, sign_off.strip()) if part)
