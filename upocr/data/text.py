"""Text content for the synthetic data engine: words, numbers, prices, dates, codes, phrases.

Every function takes a :class:`numpy.random.Generator`, so the content is reproducible.
"""

from __future__ import annotations

import numpy as np

#: Built-in word list: everyday, shop, street and document vocabulary.
WORDS: tuple[str, ...] = tuple(
    """
    the of and to in is for on with as at by from this that be are was not or have you all new
    more one can will about your our out up time day year home page free open sale shop store
    price total amount date name address city street road avenue north south east west center
    market coffee tea bread milk fresh organic bakery pizza menu lunch dinner breakfast hotel
    bank cash card credit paid change receipt invoice order number item quantity tax subtotal
    discount offer special today only limited edition premium quality service customer support
    welcome exit entrance parking stop slow school hospital police station airport train bus
    ticket gate platform arrival departure delay cancelled room floor office building public
    private notice warning danger caution please thank visit again call email phone website
    contact information report summary chapter section figure table result method data value
    system model image text letter word paper study research science nature water energy power
    light green blue red black white gold silver garden house family friends happy birthday
    holiday summer winter spring autumn morning evening night world city local national global
    company limited group international university college library museum theatre cinema music
    festival concert sport club team game match final season best great good big small little
    long short high low first last next early late fast easy simple smart clean safe strong
    river mountain ocean island beach park forest village bridge tower castle square corner
    apple orange banana cherry lemon grape tomato potato chicken beef salad soup juice water
    monday tuesday wednesday thursday friday saturday sunday january february march april may
    june july august september october november december account balance payment transfer
    certificate license permit approved signature official document record copy original
    delivery shipping weight size color style model brand product catalog collection design
    """.split()
)

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
MONTHS_LONG = ("January", "February", "March", "April", "May", "June", "July", "August",
               "September", "October", "November", "December")
_CURRENCIES = ("$", "$", "$", "€", "€", "£", "¥")
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def apply_case(rng: np.random.Generator, text: str) -> str:
    """Lower, Title, UPPER or (rarely) rAnDoM case."""
    r = rng.random()
    if r < 0.4:
        return text.lower()
    if r < 0.7:
        return " ".join(w[:1].upper() + w[1:] for w in text.split(" "))
    if r < 0.95:
        return text.upper()
    flips = rng.random(len(text)) < 0.5
    return "".join(c.upper() if f else c.lower() for c, f in zip(text, flips))


def word(rng: np.random.Generator) -> str:
    return apply_case(rng, _pick(rng, WORDS))


def phrase(rng: np.random.Generator, low: int = 2, high: int = 4) -> str:
    count = int(rng.integers(low, high + 1))
    return apply_case(rng, " ".join(_pick(rng, WORDS) for _ in range(count)))


def number(rng: np.random.Generator) -> str:
    digits = int(rng.integers(1, 7))
    value = int(rng.integers(10 ** (digits - 1), 10 ** digits))
    r = rng.random()
    if r < 0.25 and value >= 1000:
        return f"{value:,}"
    if r < 0.45:
        return f"{value / 100:.2f}"
    if r < 0.55:
        return f"{int(rng.integers(0, 101))}%"
    return str(value)


def price(rng: np.random.Generator) -> str:
    whole = int(10 ** rng.uniform(0, 4))
    cents = int(rng.integers(0, 100))
    symbol = _pick(rng, _CURRENCIES)
    r = rng.random()
    if r < 0.5:
        return f"{symbol}{whole}.{cents:02d}"
    if r < 0.65:
        return f"{symbol}{whole:,}"
    if r < 0.8:
        return f"{whole},{cents:02d} {symbol}"
    if r < 0.9:
        return f"{whole}.{cents:02d} {_pick(rng, ('USD', 'EUR', 'GBP'))}"
    return f"{symbol}{whole}.99"


def date(rng: np.random.Generator) -> str:
    year = int(rng.integers(1950, 2036))
    month = int(rng.integers(1, 13))
    day = int(rng.integers(1, 29))
    style = int(rng.integers(6))
    if style == 0:
        return f"{year}-{month:02d}-{day:02d}"
    if style == 1:
        return f"{day:02d}/{month:02d}/{year}"
    if style == 2:
        return f"{month}/{day}/{year % 100:02d}"
    if style == 3:
        return f"{day:02d}.{month:02d}.{year}"
    if style == 4:
        return f"{MONTHS[month - 1]} {day}, {year}"
    return f"{day} {MONTHS_LONG[month - 1]} {year}"


def clock(rng: np.random.Generator) -> str:
    hour, minute = int(rng.integers(0, 24)), int(rng.integers(0, 60))
    if rng.random() < 0.6:
        return f"{hour:02d}:{minute:02d}"
    return f"{hour % 12 or 12}:{minute:02d} {'AM' if hour < 12 else 'PM'}"


def code(rng: np.random.Generator) -> str:
    style = int(rng.integers(7))
    letters = "".join(_pick(rng, _LETTERS) for _ in range(int(rng.integers(1, 4))))
    digits = "".join(str(int(d)) for d in rng.integers(0, 10, int(rng.integers(2, 6))))
    if style == 0:
        return f"{letters}-{digits}"
    if style == 1:
        return f"No. {digits}"
    if style == 2:
        return f"#{letters}{digits}"
    if style == 3:
        return f"+{int(rng.integers(1, 99))} {int(rng.integers(100, 999))}-{int(rng.integers(1000, 9999))}"
    if style == 4:
        return f"{_pick(rng, WORDS)}@{_pick(rng, WORDS)}.com"
    if style == 5:
        return f"www.{_pick(rng, WORDS)}.{_pick(rng, ('com', 'org', 'net', 'de', 'co.uk'))}"
    return f"{letters}{digits}"


_KINDS = (
    (word, 0.42),
    (phrase, 0.16),
    (number, 0.1),
    (price, 0.1),
    (date, 0.08),
    (clock, 0.04),
    (code, 0.1),
)
_KIND_P = np.array([p for _, p in _KINDS]) / sum(p for _, p in _KINDS)


def token(rng: np.random.Generator) -> str:
    """One text item for a scene: a word, phrase, number, price, date, time or code."""
    make = _KINDS[int(rng.choice(len(_KINDS), p=_KIND_P))][0]
    return make(rng)


def sentence_words(rng: np.random.Generator, count: int) -> list[str]:
    """Words of running text for document pages, with some numbers and punctuation."""
    words: list[str] = []
    start = True
    for _ in range(count):
        r = rng.random()
        if r < 0.06:
            item = number(rng)
        elif r < 0.08:
            item = date(rng)
        elif r < 0.1:
            item = price(rng)
        else:
            item = _pick(rng, WORDS)
            if start:
                item = item[:1].upper() + item[1:]
            elif rng.random() < 0.05:
                item = item.upper()
        start = False
        p = rng.random()
        if p < 0.08:
            item += "."
            start = True
        elif p < 0.14:
            item += ","
        elif p < 0.15:
            item += ":"
        words.append(item)
    return words
