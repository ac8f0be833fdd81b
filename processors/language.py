"""Which language a text is in.

``identify``: the email's language, with py3langid (a naive Bayes model over byte
n-grams, 97 languages, its weights inside the wheel). ``detect``: from the most common
words of seven languages, enough to tell a reply that switched language from the email it
answers. Both say None when the text is too short or unclear.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import cache
from typing import Any

MIN_WORDS = 4
MIN_PROBABILITY = 0.5


@cache
def _identifier() -> Any:
    from py3langid import langid

    return langid.LanguageIdentifier.from_modelpath(
        langid.MODEL_DIR / langid.MODEL_FILE, norm_probs=True
    )


def identify(text: str) -> str | None:
    """The ISO 639-1 code of ``text``'s language; None if too short or unclear."""
    if len(re.findall(r"[^\W\d_]{2,}", text)) < MIN_WORDS:
        return None
    language, probability = _identifier().classify(text[:4000])
    return str(language) if probability >= MIN_PROBABILITY else None


STOPWORDS = {
    "en": "the and to of a in is you that it for your we this are with be on have not please "
    "can will our i my me was but do",
    "de": "der die das und ist nicht ich sie zu den mit ein eine für auf wir ihr bitte sehr "
    "haben es dem von auch ihre",
    "fr": "le la les et est de des un une pour vous nous que qui pas je votre dans avec sur "
    "ce merci au du",
    "es": "el la los las y es de que en un una por para con no su usted gracias se lo nos "
    "del al como",
    "it": "il lo la gli le e di che non un una per con sono sua grazie nel della ho è mi",
    "pt": "o a os as e de que em um uma para com não por obrigado você seu sua do da no na",
    "nl": "de het een en van is niet ik u wij met voor op dat zijn graag bedankt uw te er",
}
WORDS = {lang: set(words.split()) for lang, words in STOPWORDS.items()}
#: Each stop word's languages, in the order of ``WORDS``: one lookup per token.
LANGUAGES_OF: dict[str, tuple[str, ...]] = {
    word: tuple(lang for lang, words in WORDS.items() if word in words)
    for word in set().union(*WORDS.values())
}
MIN_HITS = 4


def detect(text: str) -> str | None:
    tokens = re.findall(r"[^\W\d_]+", text.lower())
    # a language's hits in the order they come, as counting language by language would
    counts = Counter(lang for token in tokens for lang in LANGUAGES_OF.get(token, ()))
    if not counts:
        return None
    (best, hits), *rest = counts.most_common()
    runner_up = rest[0][1] if rest else 0
    if hits < MIN_HITS or hits < 1.5 * runner_up:
        return None
    return best
