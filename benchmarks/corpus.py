"""A realistic corpus, made deterministically: the files and records an organization's export really holds.

What the archive writers are measured and tested on, instead of random bytes (which no deflate can shrink
and no real export is made of):

- ``build_corpus(seed, total_bytes, *, big=False)``: files of real formats, about ``total_bytes`` in all.
  JPEG photos (product shots on a light background and full-frame scenes: multi-scale noise, gradients,
  shapes and sensor grain, encoded by Pillow at qualities 75-95, some progressive or with optimised
  Huffman tables), PNG (logos with flat colours and anti-aliased edges; photographic cut-outs with
  alpha), PDF (real structure: catalog, pages, fonts, content streams deflated or not, as producers
  write them, JPEG images, an uncompressed XMP packet, an embedded font program, a correct xref table),
  SVG (paths of decimal coordinates, gradients, sometimes an embedded base64 PNG), CSV (price lists and
  lot records) and text documents (Markdown and plain text from a Zipf-distributed vocabulary). Sizes
  50 KB-2 MB for images and PDFs, smaller for the text formats. ``big=True`` adds two files over
  the 16 MiB whole-read threshold of the zip builder: a ~20 MB JPEG and a ~18 MB CSV, so both streamed
  paths (incompressible and compressible) are covered.
- ``random_corpus(seed, total_bytes)``: pure random bytes, the incompressible case apart.
- ``corpus_records(seed, n, *, brand_ids=None)``: product records in the seed fixture's shape (format 1,
  without binaries): names, descriptions, GTINs (valid check digits, company prefixes and runs of
  sequential item numbers), prices, tags and attributes drawn from seeded distributions, with no more
  repetition than a real catalog has.
- ``corpus_summary(files)``: count and bytes per kind.

Every function is a pure function of its arguments: the same seed gives the same bytes with the same
Python and Pillow (whose zlib and libjpeg-turbo encode the images).
"""

from __future__ import annotations

import base64
import io
import itertools
import math
import random
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from PIL import Image, ImageDraw, ImageFilter

MIB = 1 << 20
WHOLE_READ_LIMIT = 16 * MIB  # the zip builder reads assets up to this size whole (export.entries)
ID_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


@dataclass(frozen=True)
class CorpusFile:
    name: str  # a plausible file name (not unique: place it in a folder of its own)
    content_type: str
    data: bytes
    kind: str  # "jpeg", "png", "pdf", "svg", "csv", "text" or "random"


# --- words ------------------------------------------------------------------------------------------------

_WORDS = """
the of and to a in is it you that he was for on are with as I his they be at one have this from or had by
not word but what some we can out other were all there when up use your how said an each she which do
their time if will way about many then them write would like so these her long make thing see him two has
look more day could go come did number sound no most people my over know water than call first who may
down side been now find any new work part take get place made live where after back little only round man
year came show every good me give our under name very through just form sentence great think say help low
line differ turn cause much mean before move right boy old too same tell does set three want air well also
play small end put home read hand port large spell add even land here must big high such follow act why
ask men change went light kind off need house picture try us again animal point mother world near build
self earth father head stand own page should country found answer school grow study still learn plant
cover food sun four between state keep eye never last let thought city tree cross farm hard start might
story saw far sea draw left late run while press close night real life few north open seem together next
white children begin got walk example ease paper group always music those both mark often letter until
mile river car feet care second book carry took science eat room friend began idea fish mountain stop once
base hear horse cut sure watch color face wood main enough plain girl usual young ready above ever red list
though feel talk bird soon body dog family direct pose leave song measure door product black short numeral
class wind question happen complete ship area half rock order fire south problem piece told knew pass since
top whole king space heard best hour better true during hundred five remember step early hold west ground
interest reach fast verb sing listen six table travel less morning ten simple several vowel toward war lay
against pattern slow center love person money serve appear road map rain rule govern pull cold notice voice
unit power town fine certain fly fall lead cry dark machine note wait plan figure star box noun field rest
correct able pound done beauty drive stood contain front teach week final gave green oh quick develop ocean
warm free minute strong special mind behind clear tail produce fact street inch multiply nothing course stay
wheel full force blue object decide surface deep moon island foot system busy test record boat common gold
possible plane stead dry wonder laugh thousand ago ran check game shape equate hot miss brought heat snow
tire bring yes distant fill east paint language among coffee roast bergamot floral washed natural honey
lemon dark medium light single origin blend espresso filter grinder burr kettle brew ratio extraction
acidity body sweetness finish aroma altitude farm cooperative harvest lot bag valve degassing storage
freshness packaging recyclable compostable shipping wholesale retail subscription certified organic
fair trade direct sourcing roaster cupping score notes chocolate caramel stone fruit citrus berry jasmine
hazelnut almond spice tobacco molasses cherry plum apricot peach tea leaf oolong green black herbal mug
cup ceramic glass steel stainless warranty manual instructions descaling cleaning temperature pressure
grams milliliters minutes seconds degrees setting fine coarse uniform particle capacity weight height
""".split()  # noqa: SIM905 - a word list reads better as prose
# Zipf-like frequencies, as words have in real text: few very common, a long tail of rare ones.
_WORD_WEIGHTS = list(itertools.accumulate(1.0 / (rank + 2.7) for rank in range(len(_WORDS))))
_CAPITALISED = [
    "Huila",
    "Yirgacheffe",
    "Sidamo",
    "Antigua",
    "Tarrazú",
    "Cerrado",
    "Kona",
    "Nariño",
    "Guji",
    "Kayanza",
    "Chiapas",
    "Sumatra",
    "Kenya",
    "Ethiopia",
    "Colombia",
    "Brazil",
    "Guatemala",
    "Costa Rica",
    "Rwanda",
    "Burundi",
    "Mexico",
    "Peru",
    "Honduras",
    "Yunnan",
]


def _words(rng: random.Random, count: int) -> list[str]:
    return rng.choices(_WORDS, cum_weights=_WORD_WEIGHTS, k=count)


def _sentence(rng: random.Random) -> str:
    words = _words(rng, max(3, int(rng.lognormvariate(2.5, 0.4))))
    for index in range(1, len(words)):
        roll = rng.random()
        if roll < 0.04:
            words[index] = rng.choice(_CAPITALISED)
        elif roll < 0.07:
            words[index] = f"{rng.randint(1, 400)}{rng.choice(['', ' g', ' ml', ' °C', '%', ' s', ' mm'])}"
        elif roll < 0.12:
            words[index - 1] += ","
    words[0] = words[0].capitalize()
    return " ".join(words) + rng.choice([".", ".", ".", ".", "!", "?", ";"])[:1]


def _paragraph(rng: random.Random, sentences: int | None = None) -> str:
    count = sentences or max(1, int(rng.lognormvariate(1.3, 0.5)))
    return " ".join(_sentence(rng) for _ in range(count))


# --- records ----------------------------------------------------------------------------------------------

_CATEGORIES: dict[str, dict[str, Any]] = {
    "coffee": {
        "nouns": ["Coffee", "Espresso", "Filter Roast", "Blend", "Decaf", "Cold Brew", "Microlot"],
        "sizes": ["250 g", "340 g", "500 g", "1 kg", "2.5 kg", "12 oz", "5 lb"],
        "price": (2.9, 0.45),
    },
    "tea": {
        "nouns": ["Green Tea", "Black Tea", "Oolong", "Chai", "Herbal Infusion", "Matcha", "Earl Grey"],
        "sizes": ["50 g", "100 g", "20 bags", "250 g", "1 kg"],
        "price": (2.6, 0.5),
    },
    "equipment": {
        "nouns": [
            "Kettle",
            "Grinder",
            "Dripper",
            "Scale",
            "French Press",
            "Espresso Machine",
            "Tamper",
            "Milk Pitcher",
            "Server",
            "Filter Papers",
        ],
        "sizes": ["", "0.6 l", "1 l", "1.2 l", "600 ml", "100 pcs", "58 mm"],
        "price": (3.9, 1.0),
    },
    "apparel": {
        "nouns": ["T-Shirt", "Hoodie", "Cap", "Apron", "Tote Bag", "Socks"],
        "sizes": ["XS", "S", "M", "L", "XL", "XXL", "One Size"],
        "price": (3.3, 0.4),
    },
    "snacks": {
        "nouns": ["Biscotti", "Chocolate Bar", "Granola", "Shortbread", "Almond Brittle"],
        "sizes": ["80 g", "100 g", "150 g", "250 g", "6 pack"],
        "price": (1.9, 0.4),
    },
}
_CATEGORY_WEIGHTS = [50, 14, 16, 8, 12]
_ADJECTIVES = [
    "Classic",
    "Signature",
    "Morning",
    "House",
    "Reserve",
    "Limited",
    "Organic",
    "Wild",
    "Bright",
    "Velvet",
    "Midnight",
    "Golden",
    "Heritage",
    "Alpine",
    "Harbour",
    "Summit",
    "Ember",
    "Cascade",
    "Northern",
    "Island",
    "Copper",
    "Slow",
    "Daily",
    "Weekend",
    "Founders'",
    "Barista",
    "Pro",
]
_COLOURS = ["black", "white", "matte black", "copper", "stainless", "sage", "navy", "sand", "charcoal", "red"]
_TAGS = [
    "single-origin",
    "blend",
    "light",
    "medium",
    "dark",
    "espresso",
    "filter",
    "decaf",
    "organic",
    "fair-trade",
    "limited",
    "seasonal",
    "new",
    "bestseller",
    "gift",
    "subscription",
    "wholesale",
    "washed",
    "natural",
    "honey",
    "anaerobic",
    "low-acid",
    "chocolatey",
    "fruity",
    "floral",
    "nutty",
    "sweet",
    "bold",
    "smooth",
    "bright",
    "complex",
    "clean",
    "kosher",
    "vegan",
    "gluten-free",
    "recyclable",
    "compostable",
    "local",
    "imported",
    "award-winning",
    "barista-choice",
    "staff-pick",
    "clearance",
    "pre-order",
    "back-in-stock",
    "bundle",
    "refill",
    "travel",
    "home",
    "office",
    "cafe",
    "manual",
    "electric",
    "glass",
    "ceramic",
    "steel",
    "bamboo",
    "cotton",
    "merch",
    "snack",
    "tea",
    "matcha",
    "herbal",
    "caffeine-free",
    "cold-brew",
    "iced",
    "holiday",
    "summer",
    "winter",
    "spring",
    "autumn",
    "direct-trade",
    "women-produced",
    "high-altitude",
]
_TAG_WEIGHTS = list(itertools.accumulate(1.0 / (rank + 1.5) for rank in range(len(_TAGS))))
_PROCESSES = ["washed", "natural", "honey", "anaerobic", "wet-hulled", "semi-washed"]
_ROASTS = ["light", "medium-light", "medium", "medium-dark", "dark", "omni"]
_VARIETIES = [
    "Bourbon",
    "Typica",
    "Caturra",
    "Gesha",
    "SL28",
    "SL34",
    "Heirloom",
    "Catuai",
    "Pacamara",
    "Castillo",
    "Pink Bourbon",
    "Java",
    "Maragogype",
]
_NOTES = [
    "chocolate",
    "caramel",
    "toffee",
    "molasses",
    "honey",
    "brown-sugar",
    "vanilla",
    "hazelnut",
    "almond",
    "walnut",
    "cherry",
    "plum",
    "raisin",
    "fig",
    "date",
    "apricot",
    "peach",
    "nectarine",
    "apple",
    "pear",
    "grape",
    "blackcurrant",
    "blueberry",
    "raspberry",
    "strawberry",
    "cranberry",
    "lemon",
    "lime",
    "orange",
    "grapefruit",
    "bergamot",
    "mandarin",
    "jasmine",
    "rose",
    "lavender",
    "hibiscus",
    "black-tea",
    "green-tea",
    "tobacco",
    "cedar",
    "clove",
    "cinnamon",
    "cardamom",
    "pepper",
    "butter",
    "cream",
    "malt",
]
_CURRENCIES = ["CAD"] * 8 + ["USD", "EUR"]
_START = datetime(2022, 1, 3, 8, 0, tzinfo=UTC)


def short_id(rng: random.Random) -> str:
    return "".join(rng.choices(ID_ALPHABET, k=22))


def gs1_check_digit(body: str) -> str:
    total = sum(int(digit) * (3 if position % 2 == 0 else 1) for position, digit in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


def _timestamp(rng: random.Random, after: datetime | None = None) -> str:
    base = after or _START
    moment = base + timedelta(
        seconds=rng.randint(0, 3 * 365 * 86400) if after is None else rng.randint(60, 40_000_000)
    )
    if rng.random() < 0.3:
        moment = moment.replace(microsecond=rng.randrange(1_000_000))
    return moment.isoformat()


def _price(rng: random.Random, mu: float, sigma: float) -> str:
    amount = math.exp(rng.gauss(mu, sigma))
    ending = rng.random()
    if ending < 0.45:
        cents = 99 if amount >= 1 else 49
    elif ending < 0.6:
        cents = 95
    elif ending < 0.8:
        cents = 0
    elif ending < 0.88:
        cents = 50
    else:
        cents = rng.randrange(100)
    return f"{int(amount)}.{cents:02d}"


def _attributes(rng: random.Random, category: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    if category == "coffee":
        attributes["origin"] = rng.choice(_CAPITALISED)
        attributes["process"] = rng.choice(_PROCESSES)
        attributes["roast"] = rng.choice(_ROASTS)
        if rng.random() < 0.6:
            attributes["varieties"] = rng.sample(_VARIETIES, rng.randint(1, 3))
        if rng.random() < 0.5:
            attributes["altitude_m"] = rng.randrange(900, 2400, 50)
        if rng.random() < 0.4:
            attributes["tasting_notes"] = rng.sample(_NOTES, rng.randint(2, 4))
        attributes["weight_g"] = rng.choice([250, 340, 454, 500, 907, 1000, 2268])
    elif category == "tea":
        attributes["origin"] = rng.choice(_CAPITALISED)
        attributes["caffeine"] = rng.choice(["none", "low", "medium", "high"])
        attributes["steep_temperature_c"] = rng.choice([70, 80, 85, 90, 95, 100])
        attributes["steep_minutes"] = rng.choice([2, 3, 3.5, 4, 5])
    elif category == "equipment":
        attributes["material"] = rng.choice(["steel", "glass", "ceramic", "plastic", "aluminium", "copper"])
        attributes["colour"] = rng.choice(_COLOURS)
        if rng.random() < 0.6:
            attributes["capacity_l"] = round(rng.uniform(0.3, 2.0), 1)
        if rng.random() < 0.5:
            attributes["warranty_months"] = rng.choice([6, 12, 24, 36])
        if rng.random() < 0.3:
            attributes["power_w"] = rng.choice([600, 900, 1200, 1500, 1800])
    elif category == "apparel":
        attributes["material"] = rng.choice(["cotton", "organic cotton", "polyester blend", "canvas"])
        attributes["colour"] = rng.choice(_COLOURS)
        attributes["sizes"] = rng.sample(["XS", "S", "M", "L", "XL", "XXL"], rng.randint(1, 6))
    else:
        attributes["allergens"] = rng.sample(["nuts", "milk", "gluten", "soy", "eggs"], rng.randint(0, 3))
        attributes["shelf_life_days"] = rng.choice([30, 60, 90, 180, 365])
    return attributes


def corpus_records(seed: int, n: int, *, brand_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """``n`` product records in the seed fixture's shape (no ``images``/``documents``: attach your own).

    ``brand_ids``: the brands they belong to (a skewed draw, as a few brands hold most products); by
    default a pool of made-up ids (only valid in a fixture that has those brands: pass your own)."""
    rng = random.Random(f"records:{seed}")
    brands = list(brand_ids) if brand_ids is not None else [short_id(rng) for _ in range(max(1, n // 40))]
    brand_weights = list(itertools.accumulate(1.0 / (rank + 1) for rank in range(len(brands))))
    categories = list(_CATEGORIES)
    # GS1 company prefixes of a few suppliers; each numbers its items in runs, as real catalogs do.
    companies = [
        str(rng.choice([0, 0, 0, 6, 7, 3, 4, 5, 8])) + f"{rng.randrange(10**8):08d}"[: rng.randint(6, 8)]
        for _ in range(max(3, n // 100))
    ]
    next_item = {company: rng.randrange(1000) for company in companies}
    records: list[dict[str, Any]] = []
    for _ in range(n):
        category = rng.choices(categories, weights=_CATEGORY_WEIGHTS)[0]
        spec = _CATEGORIES[category]
        company = rng.choice(companies)
        next_item[company] += rng.choice([1, 1, 1, 2, 3, 10])
        width = 12 - len(company)
        body = company + f"{next_item[company] % 10**width:0{width}d}"  # GTIN-13 without its check digit
        roll = rng.random()
        if roll < 0.12:
            body = str(rng.randint(1, 3)) + body  # GTIN-14: a case of the item
        elif roll < 0.3 and body.startswith("0"):
            body = body[1:]  # UPC-A, as North American suppliers write it
        gtin = body + gs1_check_digit(body)
        parts = []
        if rng.random() < 0.6:
            parts.append(rng.choice(_ADJECTIVES))
        if category in ("coffee", "tea") and rng.random() < 0.7:
            parts.append(rng.choice(_CAPITALISED))
        parts.append(rng.choice(spec["nouns"]))
        size = rng.choice(spec["sizes"])
        name = " ".join(parts) + (f" {size}" if size else "")
        if category == "equipment" and rng.random() < 0.4:
            name += f" — {rng.choice(_COLOURS)}"
        created = _timestamp(rng)
        record: dict[str, Any] = {
            "id": short_id(rng),
            "brand_id": rng.choices(brands, cum_weights=brand_weights)[0],
            "name": name,
            "gtin": gtin,
            "created_at": created,
        }
        if rng.random() < 0.55:
            record["updated_at"] = _timestamp(rng, datetime.fromisoformat(created))
        roll = rng.random()
        if roll < 0.75:
            paragraphs = [_paragraph(rng) for _ in range(rng.choice([1, 1, 1, 2, 2, 3, 4]))]
            record["description"] = "\n\n".join(paragraphs) + ("\n" if rng.random() < 0.3 else "")
        elif roll < 0.85:
            record["description"] = _sentence(rng)
        record["attributes"] = _attributes(rng, category)
        tag_count = rng.choice([0, 1, 2, 2, 3, 3, 4, 5, 6])
        if tag_count:
            record["tags"] = sorted(set(rng.choices(_TAGS, cum_weights=_TAG_WEIGHTS, k=tag_count)))
        if rng.random() < 0.92:
            record["price"] = {"amount": _price(rng, *spec["price"]), "currency": rng.choice(_CURRENCIES)}
        records.append(record)
    return records


# --- images -----------------------------------------------------------------------------------------------


def _noise(rng: random.Random, size: tuple[int, int], cell: int, mode: str = "RGB") -> Image.Image:
    """Random values on a grid of ``cell`` pixels, smoothly interpolated: one octave of value noise."""
    width, height = size
    grid = (max(2, width // cell + 2), max(2, height // cell + 2))
    small = Image.frombytes(mode, grid, rng.randbytes(grid[0] * grid[1] * len(mode)))
    return small.resize(size, Image.Resampling.BICUBIC)


def _texture(rng: random.Random, size: tuple[int, int], tint: tuple[int, int, int]) -> Image.Image:
    """Photographic-looking content: octaves of noise from coarse to fine, tinted, with a gradient and
    objects with hard edges. Drawn at a quarter of the size and enlarged (grain is added at full size)."""
    full = size
    size = (max(8, size[0] // 4), max(8, size[1] // 4))
    width, height = size
    longest = max(width, height)
    image = _noise(rng, size, max(8, longest // rng.randint(2, 4)))
    for divisor, alpha in (
        (rng.randint(8, 14), 0.35),
        (rng.randint(30, 60), 0.22),
        (rng.randint(100, 200), 0.12),
    ):
        image = Image.blend(image, _noise(rng, size, max(2, longest // divisor)), alpha)
    tint_layer = Image.new("RGB", size, tint)
    gradient = Image.linear_gradient("L").rotate(rng.uniform(0, 360)).resize(size)
    image = Image.composite(image, Image.blend(image, tint_layer, 0.55), gradient)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(3, 12)):  # objects: hard edges, as photos have
        x, y = rng.randrange(width), rng.randrange(height)
        radius = rng.randint(max(1, longest // 40), max(2, longest // 6))
        colour = tuple(min(255, max(0, c + rng.randint(-60, 60))) for c in tint)
        box = (x - radius, y - radius // rng.randint(1, 3), x + radius, y + radius)
        if rng.random() < 0.5:
            draw.ellipse(box, fill=colour)
        else:
            draw.rounded_rectangle(box, radius=radius // 4, fill=colour)
    return image.resize(full, Image.Resampling.BICUBIC)


def _grain(rng: random.Random, image: Image.Image, amount: float) -> Image.Image:
    """Sensor noise, pixel by pixel: what makes photos expensive to encode."""
    noise = Image.frombytes("L", image.size, rng.randbytes(image.size[0] * image.size[1])).convert("RGB")
    return Image.blend(image, noise, amount)


def _tint(rng: random.Random) -> tuple[int, int, int]:
    return (rng.randint(40, 220), rng.randint(30, 200), rng.randint(20, 180))


def _dimensions(rng: random.Random, sides: Sequence[int]) -> tuple[int, int]:
    longest = rng.choice(sides)
    ratio = rng.choice([1.0, 4 / 3, 3 / 2, 16 / 9, 1.25])
    width, height = longest, int(longest / ratio)
    return (width, height) if rng.random() < 0.7 else (height, width)


def _product_shot(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """An object on a light, nearly flat background with a soft shadow: most catalog photos. The scene
    is laid out at a quarter of the size (smooth anyway) and enlarged; the object gets full-size grain."""
    width, height = small = (max(8, size[0] // 4), max(8, size[1] // 4))
    shade = rng.choice([255, 255, 252, 248, 244, 240])
    background = Image.new("RGB", small, (shade, shade, shade))
    if shade < 255:  # a studio sweep: a faint gradient instead of clipped white
        sweep = Image.linear_gradient("L").resize(small).point(lambda v: 255 - v // 12)
        background = Image.composite(background, Image.new("RGB", small, (shade - 18,) * 3), sweep)
    shadow = Image.new("L", small, 0)
    cx = width // 2 + rng.randint(-width // 10, width // 10)
    cy = height // 2 + rng.randint(-height // 12, height // 12)
    ow, oh = int(width * rng.uniform(0.22, 0.36)), int(height * rng.uniform(0.3, 0.42))
    ImageDraw.Draw(shadow).ellipse(
        (cx - ow, cy + oh - oh // 6, cx + ow, cy + oh + oh // 6), fill=rng.randint(60, 140)
    )
    shadow = shadow.filter(ImageFilter.GaussianBlur(max(width, height) / 60))
    background = Image.composite(Image.new("RGB", small, (70, 70, 70)), background, shadow)
    mask = Image.new("L", small, 0)
    draw = ImageDraw.Draw(mask)
    draw.rounded_rectangle((cx - ow, cy - oh, cx + ow, cy + oh), radius=ow // rng.randint(2, 8), fill=255)
    if rng.random() < 0.5:  # a lid, a handle, a spout
        draw.ellipse((cx - ow // 2, cy - oh - oh // 4, cx + ow // 2, cy - oh + oh // 4), fill=255)
    background = background.resize(size, Image.Resampling.BICUBIC)
    mask = mask.resize(size, Image.Resampling.BILINEAR)  # an anti-aliased outline
    product = _grain(rng, _texture(rng, size, _tint(rng)), rng.uniform(0.03, 0.1))
    image = Image.composite(product, background, mask)
    if shade < 255 and rng.random() < 0.5:  # an unclipped background carries noise too
        image = _grain(rng, image, rng.uniform(0.01, 0.025))
    return image


def _scene(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """A full-frame photo: texture edge to edge, and grain."""
    return _grain(rng, _texture(rng, size, _tint(rng)), rng.uniform(0.04, 0.12))


def _jpeg_bytes(rng: random.Random, image: Image.Image, quality: int | None = None) -> bytes:
    out = io.BytesIO()
    options: dict[str, Any] = {"quality": quality or rng.choice([75, 80, 85, 85, 90, 92, 95])}
    if rng.random() < 0.25:
        options["optimize"] = True
    if rng.random() < 0.15:
        options["progressive"] = True
    if rng.random() < 0.6:  # camera or editor metadata
        exif = Image.Exif()
        exif[0x010F] = rng.choice(["Canon", "NIKON CORPORATION", "SONY", "FUJIFILM", "Apple"])
        exif[0x0110] = rng.choice(["EOS R6", "Z 6II", "ILCE-7M4", "X-T4", "iPhone 14 Pro"])
        exif[0x0131] = rng.choice(["Adobe Photoshop 25.1 (Macintosh)", "Capture One 23", "GIMP 2.10.34"])
        exif[0x0132] = f"{rng.randint(2019, 2025)}:{rng.randint(1, 12):02d}:{rng.randint(1, 28):02d} 10:12:03"
        options["exif"] = exif.tobytes()
    image.save(out, "JPEG", **options)
    return out.getvalue()


def _jpeg(rng: random.Random) -> CorpusFile:
    if rng.random() < 0.55:
        image = _product_shot(rng, _dimensions(rng, [1200, 1500, 2000, 2400, 3000, 3600]))
        name = rng.choice(["front", "back", "side", "detail", "packshot", "lifestyle", "top"])
    else:
        image = _scene(rng, _dimensions(rng, [800, 1024, 1200, 1600, 2048, 2400, 3000]))
        name = f"IMG_{rng.randint(1000, 9999)}"
    return CorpusFile(f"{name}.jpg", "image/jpeg", _jpeg_bytes(rng, image), "jpeg")


def _png(rng: random.Random) -> CorpusFile:
    out = io.BytesIO()
    level = rng.choice([6, 6, 6, 6, 9, 9, 1])  # most tools use zlib's default; some optimise, few hurry
    if rng.random() < 0.4:
        image = _logo(rng, _dimensions(rng, [300, 400, 600, 800, 1200]))
        image.save(out, "PNG", compress_level=level)
        return CorpusFile(
            rng.choice(["logo.png", "logo-dark.png", "badge.png", "icon.png"]),
            "image/png",
            out.getvalue(),
            "png",
        )
    size = _dimensions(rng, [320, 400, 500, 640, 800, 1000])
    photo = _product_shot(rng, size).convert("RGBA")
    alpha = Image.new("L", size, 0)
    ImageDraw.Draw(alpha).rounded_rectangle(
        (size[0] // 6, size[1] // 10, size[0] * 5 // 6, size[1] * 9 // 10), radius=size[0] // 8, fill=255
    )
    photo.putalpha(alpha.filter(ImageFilter.GaussianBlur(2)))
    photo.save(out, "PNG", compress_level=level)
    return CorpusFile(
        rng.choice(["cutout.png", "kettle.png", "render.png", "transparent.png"]),
        "image/png",
        out.getvalue(),
        "png",
    )


def _logo(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """Flat colours, anti-aliased shapes and a gradient band, on transparency."""
    scale = 2  # drawn large and reduced: anti-aliased edges, as exported logos have
    big = (size[0] * scale, size[1] * scale)
    image = Image.new("RGBA", big, (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    palette = [(*_tint(rng), 255) for _ in range(rng.randint(2, 4))]
    for _ in range(rng.randint(4, 14)):
        x, y = rng.randrange(big[0]), rng.randrange(big[1])
        radius = rng.randint(big[0] // 20, big[0] // 4)
        colour = rng.choice(palette)
        shape = rng.random()
        if shape < 0.4:
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
        elif shape < 0.7:
            points = [
                (x + rng.randint(-radius, radius), y + rng.randint(-radius, radius))
                for _ in range(rng.randint(3, 7))
            ]
            draw.polygon(points, fill=colour)
        else:
            draw.line(
                [(x, y), (x + radius, y + rng.randint(-radius, radius))],
                fill=colour,
                width=max(2, radius // 6),
            )
    for row in range(rng.randint(1, 3)):  # a word mark: rows of letter-like blocks
        top = big[1] * 3 // 4 + row * big[1] // 14
        left = big[0] // 10
        while left < big[0] * 9 // 10:
            glyph = rng.randint(big[0] // 60, big[0] // 25)
            draw.rectangle((left, top, left + glyph, top + big[1] // 22), fill=palette[0])
            left += glyph + rng.randint(big[0] // 150, big[0] // 50)
    image = image.resize(size, Image.Resampling.LANCZOS)
    if rng.random() < 0.5:
        band = Image.linear_gradient("L").resize(size)
        image = Image.composite(
            image,
            Image.new("RGBA", size, palette[-1]),
            band.point(lambda v: 255 if v < 200 else 255 - (v - 200) * 3),
        )
    return image


# --- documents --------------------------------------------------------------------------------------------


def _pdf(rng: random.Random) -> CorpusFile:
    """A spec sheet or catalog as a producer writes it: text pages, images, fonts, metadata, xref."""
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    def stream(dictionary: str, data: bytes, *, deflate: bool) -> int:
        if deflate:
            data = zlib.compress(data, 6)
            dictionary += " /Filter /FlateDecode"
        return add(
            b"<< " + dictionary.encode() + b" /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"
        )

    pages_id = add(b"")  # filled in at the end
    deflate_all = rng.random() < 0.75  # most producers deflate every content stream; some never do
    fonts = {
        "F1": add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"),
        "F2": add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>"),
    }
    if rng.random() < 0.6:  # an embedded TrueType subset: outline coordinates, deflated
        program = bytearray(b"\x00\x01\x00\x00\x00\x0c\x00\x80\x00\x03\x00\x40")
        glyph_rng = random.Random(rng.random())
        for _ in range(rng.randint(40, 160)):  # glyphs: contours of small deltas
            points = glyph_rng.randint(8, 60)
            program += points.to_bytes(2, "big") + bytes(
                glyph_rng.choice([1, 1, 33, 17, 49]) for _ in range(points)
            )
            program += b"".join(
                (glyph_rng.randint(-90, 90) & 0xFFFF).to_bytes(2, "big") for _ in range(2 * points)
            )
        file_id = stream(f"/Length1 {len(program)}", bytes(program), deflate=True)
        descriptor = add(
            b"<< /Type /FontDescriptor /FontName /ABCDEF+Inter-Regular /Flags 32 /FontBBox "
            b"[-200 -250 1100 950] /ItalicAngle 0 /Ascent 950 /Descent -250 /CapHeight 700 "
            b"/StemV 80 /FontFile2 %d 0 R >>" % file_id
        )
        widths = " ".join(str(rng.randint(250, 900)) for _ in range(95))
        fonts["F3"] = add(
            f"<< /Type /Font /Subtype /TrueType /BaseFont /ABCDEF+Inter-Regular /FirstChar 32 "
            f"/LastChar 126 /Widths [{widths}] /FontDescriptor {descriptor} 0 R "
            f"/Encoding /WinAnsiEncoding >>".encode()
        )
    page_ids = []
    for page in range(max(1, int(rng.lognormvariate(0.8, 0.7)))):
        images: dict[str, int] = {}
        if rng.random() < 0.7:
            for index in range(rng.choice([1, 1, 1, 2, 3])):
                size = _dimensions(rng, [480, 640, 800, 1024, 1280, 1600])
                photo = _product_shot(rng, size) if rng.random() < 0.6 else _scene(rng, size)
                data = _jpeg_bytes(rng, photo, quality=rng.choice([70, 75, 80, 85]))
                images[f"Im{index + 1}"] = stream(
                    f"/Type /XObject /Subtype /Image /Width {size[0]} /Height {size[1]} "
                    "/ColorSpace /DeviceRGB /BitsPerComponent 8 /Filter /DCTDecode",
                    data,
                    deflate=False,
                )
        content = _page_content(rng, page, images, list(fonts))
        content_id = stream("", content, deflate=deflate_all or rng.random() < 0.3)
        xobjects = " ".join(f"/{name} {number} 0 R" for name, number in images.items())
        font_refs = " ".join(f"/{name} {number} 0 R" for name, number in fonts.items())
        page_ids.append(
            add(
                f"<< /Type /Page /Parent {pages_id} 0 R /MediaBox [0 0 612 792] "
                f"/Resources << /Font << {font_refs} >> /XObject << {xobjects} >> "
                f"/ProcSet [/PDF /Text /ImageC] >> /Contents {content_id} 0 R >>".encode()
            )
        )
    objects[pages_id - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % number for number in page_ids),
        len(page_ids),
    )
    moment = f"{rng.randint(2018, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T09:30:00Z"
    xmp = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:pdf="http://ns.adobe.com/pdf/1.3/">\n'
        f'<dc:title><rdf:Alt><rdf:li xml:lang="x-default">{_sentence(rng)}</rdf:li></rdf:Alt></dc:title>\n'
        f"<xmp:CreateDate>{moment}</xmp:CreateDate>\n<xmp:ModifyDate>{moment}</xmp:ModifyDate>\n"
        f"<xmp:CreatorTool>{rng.choice(['Adobe InDesign 18.5', 'Microsoft Word', 'LibreOffice 7.6'])}"
        "</xmp:CreatorTool>\n<pdf:Producer>Adobe PDF Library 17.0</pdf:Producer>\n"
        "</rdf:Description>\n</rdf:RDF>\n</x:xmpmeta>\n" + (" " * 99 + "\n") * 20 + '<?xpacket end="w"?>'
    ).encode()
    metadata = stream("/Type /Metadata /Subtype /XML", xmp, deflate=False)  # XMP stays readable, as written
    catalog = add(b"<< /Type /Catalog /Pages %d 0 R /Metadata %d 0 R >>" % (pages_id, metadata))
    info = add(
        f"<< /Title ({_sentence(rng)[:60]}) /Producer (Adobe PDF Library 17.0) "
        f"/CreationDate (D:{moment[:4]}{moment[5:7]}{moment[8:10]}093000Z) >>".encode()
    )
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    document_id = rng.randbytes(16).hex().encode()
    out += b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R /ID [<%s> <%s>] >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        catalog,
        info,
        document_id,
        document_id,
        xref,
    )
    name = rng.choice(
        [
            "spec sheet (2024).pdf",
            "catalog.pdf",
            "datasheet.pdf",
            "manual.pdf",
            "certificate.pdf",
            "nutrition-facts.pdf",
            "brew-guide.pdf",
        ]
    )
    return CorpusFile(name, "application/pdf", bytes(out), "pdf")


def _escape_pdf(text: str) -> str:
    return (
        text.replace("\\", "\\\\")
        .replace("(", "\\(")
        .replace(")", "\\)")
        .encode("cp1252", "replace")
        .decode("cp1252")
    )


def _page_content(rng: random.Random, page: int, images: dict[str, int], fonts: list[str]) -> bytes:
    lines = [
        f"q 0.2 0.2 0.2 rg BT /{fonts[1]} {rng.choice([16, 18, 20, 24])} Tf 54 736 Td "
        f"({_escape_pdf(_sentence(rng)[:50])}) Tj ET Q"
    ]
    y = 700.0
    for name in images:
        width = rng.randint(160, 300)
        height = int(width * rng.uniform(0.6, 1.2))
        y -= height + 12
        lines.append(f"q {width} 0 0 {height} {54 + rng.randint(0, 200)} {max(40, int(y))} cm /{name} Do Q")
    size = rng.choice([8, 9, 9.5, 10, 11])
    leading = size * 1.25
    lines.append(f"BT /{rng.choice(fonts)} {size} Tf {leading:.2f} TL 54 {max(60.0, y - 20):.2f} Td")
    while y > 60:
        text = _escape_pdf(_paragraph(rng, 1)[:95])
        if rng.random() < 0.3:  # kerned, as layout programs write text
            pieces = text.split(" ")
            array = " ".join(f"({piece} ) {rng.randint(-40, 40)}" for piece in pieces)
            lines.append(f"[{array}] TJ T*")
        else:
            lines.append(f"({text}) Tj T*")
        y -= leading
        if rng.random() < 0.08:
            lines.append(f"0 -{leading:.2f} Td")
            y -= leading
    lines.append("ET")
    for _ in range(rng.randint(0, 6)):  # rules and table cells
        x0, y0 = rng.randint(40, 400), rng.randint(40, 740)
        lines.append(f"{rng.uniform(0.2, 1.5):.2f} w {x0} {y0} m {x0 + rng.randint(50, 500)} {y0} l S")
    lines.append(
        f"BT /{fonts[0]} 7 Tf 54 30 Td (Page {page + 1}  |  www.example.com  |  rev. "
        f"{rng.randint(1, 9)}.{rng.randint(0, 9)}) Tj ET"
    )
    return "\n".join(lines).encode("cp1252", "replace")


def _svg(rng: random.Random) -> CorpusFile:
    width, height = rng.choice([(512, 512), (800, 600), (1200, 400), (256, 256), (1024, 768)])
    precision = rng.choice([1, 2, 3, 3, 4])
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        "<defs>",
    ]
    gradients = rng.randint(0, 6)
    for index in range(gradients):
        parts.append(
            f'<linearGradient id="g{index}" x1="0" y1="0" x2="{rng.random():.3f}" y2="1">'
            f'<stop offset="0" stop-color="#{rng.randrange(1 << 24):06x}"/>'
            f'<stop offset="1" stop-color="#{rng.randrange(1 << 24):06x}" stop-opacity="{rng.random():.2f}"/>'
            "</linearGradient>"
        )
    parts.append("</defs>")
    target = int(rng.lognormvariate(10.3, 1.0))  # median ~30 KB
    total = 0
    group = 0
    while total < target:
        parts.append(
            f'<g id="layer-{group}" transform="translate({rng.uniform(-20, 20):.{precision}f} '
            f'{rng.uniform(-20, 20):.{precision}f})">'
        )
        for _ in range(rng.randint(3, 30)):
            x, y = rng.uniform(0, width), rng.uniform(0, height)
            commands = [f"M{x:.{precision}f},{y:.{precision}f}"]
            for _ in range(rng.randint(2, 40)):
                if rng.random() < 0.7:
                    values = [rng.gauss(0, 12) for _ in range(6)]
                    commands.append("c" + ",".join(f"{v:.{precision}f}" for v in values))
                else:
                    commands.append(f"l{rng.gauss(0, 20):.{precision}f},{rng.gauss(0, 20):.{precision}f}")
            commands.append("z")
            fill = (
                f"url(#g{rng.randrange(gradients)})"
                if gradients and rng.random() < 0.3
                else f"#{rng.randrange(1 << 24):06x}"
            )
            path = f'<path d="{"".join(commands)}" fill="{fill}"'
            if rng.random() < 0.3:
                path += f' stroke="#{rng.randrange(1 << 24):06x}" stroke-width="{rng.uniform(0.5, 4):.1f}"'
            parts.append(path + "/>")
            total += len(parts[-1])
        if rng.random() < 0.2:
            parts.append(
                f'<text x="{rng.randint(0, width)}" y="{rng.randint(0, height)}" '
                'font-family="Inter, sans-serif" '
                f'font-size="{rng.randint(10, 48)}">{_sentence(rng)[:40]}</text>'
            )
        parts.append("</g>")
        group += 1
    if rng.random() < 0.15:  # an embedded bitmap, as exported illustrations often carry
        out = io.BytesIO()
        _scene(rng, (rng.randint(64, 200), rng.randint(64, 200))).save(out, "PNG")
        parts.append(
            f'<image width="100" height="100" xlink:href="data:image/png;base64,'
            f'{base64.b64encode(out.getvalue()).decode()}"/>'
        )
    parts.append("</svg>\n")
    name = rng.choice(["logo.svg", "illustration.svg", "diagram.svg", "icon-set.svg", "map.svg"])
    return CorpusFile(name, "image/svg+xml", "\n".join(parts).encode(), "svg")


def _csv(rng: random.Random, target: int | None = None) -> CorpusFile:
    records = corpus_records(rng.randrange(1 << 30), 50)
    warehouses = ["VIC-01", "VAN-02", "TOR-01", "MTL-03", "ONLINE"]
    prices = rng.random() < 0.6
    if prices:
        rows = ["sku,gtin,name,category,price,currency,cost,stock,warehouse,updated_at"]
    else:
        rows = ["lot,harvested,received,origin,variety,moisture_pct,density_g_l,bags,weight_kg,score,notes"]
    goal = target or min(1_500_000, int(rng.lognormvariate(11.5, 1.0)))  # median ~100 KB
    size = 0
    while size < goal:
        rows.append(_price_row(rng, rng.choice(records), warehouses) if prices else _lot_row(rng))
        size += len(rows[-1]) + 1
    name = rng.choice(["price-list.csv", "inventory.csv", "lots.csv", "export.csv", "stock-2024.csv"])
    return CorpusFile(name, "text/csv", ("\n".join(rows) + "\n").encode(), "csv")


def _price_row(rng: random.Random, record: dict[str, Any], warehouses: list[str]) -> str:
    price = record.get("price") or {"amount": "0.00", "currency": "CAD"}
    amount = float(price["amount"])
    name = str(record["name"]).replace('"', '""')
    return (
        f'{record["id"][:8].upper()}-{rng.randint(1, 99):02d},{record["gtin"]},"{name}",'
        f"{rng.choice(list(_CATEGORIES))},{amount:.2f},{price['currency']},"
        f"{amount * rng.uniform(0.35, 0.7):.2f},"
        f"{rng.randint(0, 500)},{rng.choice(warehouses)},{_timestamp(rng)[:19]}"
    )


def _lot_row(rng: random.Random) -> str:
    harvested = _START + timedelta(days=rng.randint(0, 900))
    received = harvested + timedelta(days=rng.randint(40, 200))
    notes = " ".join(_words(rng, rng.randint(0, 8)))
    return (
        f"L{rng.randint(10**6, 10**7 - 1)},{harvested:%Y-%m-%d},{received:%Y-%m-%d},"
        f"{rng.choice(_CAPITALISED)},"
        f"{rng.choice(_VARIETIES)},{rng.uniform(9.5, 12.5):.1f},{rng.uniform(640, 760):.0f},"
        f"{rng.randint(1, 320)},{rng.choice([30, 46, 60, 69, 70]) * rng.randint(1, 320)},"
        f'{rng.uniform(80, 92):.2f},"{notes}"'
    )


def _text(rng: random.Random) -> CorpusFile:
    markdown = rng.random() < 0.5
    target = int(rng.lognormvariate(9.8, 1.0))  # median ~18 KB
    parts: list[str] = []
    size = 0
    while size < target:
        if markdown and rng.random() < 0.25:
            parts.append(f"{'#' * rng.randint(1, 3)} {_sentence(rng)[:-1]}")
        elif rng.random() < 0.15:
            parts.append(
                "\n".join(f"{'-' if markdown else '*'} {_sentence(rng)}" for _ in range(rng.randint(2, 7)))
            )
        else:
            paragraph = _paragraph(rng)
            if not markdown:  # plain text wraps at 72 columns
                paragraph = _wrap(paragraph, 72)
            parts.append(paragraph)
        size += len(parts[-1]) + 2
    name = rng.choice(
        ["README.md", "care-guide.md", "brewing.md"]
        if markdown
        else ["terms.txt", "instructions.txt", "allergens.txt", "notes.txt"]
    )
    content_type = "text/markdown" if markdown else "text/plain"
    return CorpusFile(name, content_type, ("\n\n".join(parts) + "\n").encode(), "text")


def _wrap(text: str, width: int) -> str:
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "\n".join([*lines, line])


# --- the corpus -------------------------------------------------------------------------------------------

# Kinds by how often a file is of that kind (images dominate the bytes, as in a real catalog).
_MAKERS: dict[str, tuple[int, Callable[[random.Random], CorpusFile]]] = {
    "jpeg": (40, _jpeg),
    "png": (14, _png),
    "pdf": (12, _pdf),
    "svg": (10, _svg),
    "csv": (5, _csv),
    "text": (12, _text),
}
KINDS = (*_MAKERS, "random")


def build_corpus(seed: int, total_bytes: int, *, big: bool = False) -> list[CorpusFile]:
    """Files of every realistic kind, in a seeded order, adding up to at least ``total_bytes`` (the last
    file passes it). ``big`` adds, first, a JPEG and a CSV each over 16 MiB (WHOLE_READ_LIMIT)."""
    rng = random.Random(f"corpus:{seed}")
    kinds = list(_MAKERS)
    weights = [_MAKERS[kind][0] for kind in kinds]
    files: list[CorpusFile] = []
    if big:
        files.extend(big_files(seed))
    total = sum(len(file.data) for file in files)
    index = 0
    while total < total_bytes:
        kind = rng.choices(kinds, weights=weights)[0]
        file = _MAKERS[kind][1](random.Random(f"corpus:{seed}:{index}"))
        files.append(file)
        total += len(file.data)
        index += 1
    return files


def big_files(seed: int) -> list[CorpusFile]:
    """A ~20 MB photo (incompressible) and a ~18 MB CSV (compressible), both over WHOLE_READ_LIMIT."""
    rng = random.Random(f"big:{seed}")
    photo = _grain(rng, _texture(rng, (6400, 4800), _tint(rng)), 0.15)
    jpeg = _jpeg_bytes(rng, photo, quality=97)
    del photo
    if len(jpeg) <= WHOLE_READ_LIMIT:
        raise AssertionError(f"the big photo came out at {len(jpeg)} bytes, not over {WHOLE_READ_LIMIT}")
    table = _csv(rng, target=WHOLE_READ_LIMIT + 1 * MIB)
    return [
        CorpusFile("panorama.jpg", "image/jpeg", jpeg, "jpeg"),
        CorpusFile("full-catalog.csv", "text/csv", table.data, "csv"),
    ]


def random_corpus(seed: int, total_bytes: int) -> list[CorpusFile]:
    """Pure random bytes in files of 50 KB-2 MB: the incompressible extreme, kept apart from the corpus."""
    rng = random.Random(f"random:{seed}")
    files: list[CorpusFile] = []
    total = 0
    while total < total_bytes:
        size = min(2_000_000, max(50_000, int(rng.lognormvariate(12.7, 0.9))))
        files.append(
            CorpusFile(
                f"blob-{len(files):04d}.bin", "application/octet-stream", rng.randbytes(size), "random"
            )
        )
        total += size
    return files


def corpus_summary(files: Sequence[CorpusFile]) -> dict[str, tuple[int, int]]:
    """Kind -> (files, bytes), kinds in KINDS order."""
    summary: dict[str, tuple[int, int]] = {}
    for kind in KINDS:
        of_kind = [file for file in files if file.kind == kind]
        if of_kind:
            summary[kind] = (len(of_kind), sum(len(file.data) for file in of_kind))
    return summary
