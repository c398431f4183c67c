"""The word lists the prompt helpers read: cues that a part of a prompt is there, subject nouns, function
words and quality tags, with the one rule (`cue_pattern`) that turns a list into a matcher.

A cue entry is lower case. `word` matches the word and its plural (`light` matches "lights", not
"lighthouse"); `word*` matches every word starting with it; spaces match any run of spaces or hyphens;
`re:...` is a raw regular expression; entries in CJK or Hangul scripts match anywhere (those scripts do
not separate words with spaces). A few entries in Spanish, French, German, Italian, Portuguese, Russian,
Chinese, Japanese and Korean let the helpers see what non-English prompts already say.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_SPACELESS_SCRIPTS = ("CJK", "HIRAGANA", "KATAKANA", "HANGUL")


def is_spaceless(char: str) -> bool:
    """True for characters of scripts written without spaces between words (CJK, kana, Hangul)."""
    return unicodedata.name(char, "").startswith(_SPACELESS_SCRIPTS)


def words(text: str) -> frozenset[str]:
    """The space-separated words of `text`, as a set."""
    return frozenset(text.split())


def cue_pattern(entries: Iterable[str]) -> re.Pattern[str]:
    """One case-insensitive matcher for a list of cue entries (rules in the module docstring)."""
    words: list[str] = []
    anywhere: list[str] = []
    for entry in entries:
        if entry.startswith("re:"):
            words.append(f"(?:{entry[3:]})")
        elif any(is_spaceless(c) for c in entry):
            anywhere.append(re.escape(entry))
        else:
            body = r"[\s-]+".join(re.escape(w) for w in entry.rstrip("*").split(" "))
            words.append(body + (r"\w*" if entry.endswith("*") else r"(?:s|es)?(?!\w)"))
    # longest first, so that "golden hour" wins over "golden" and spans are reported whole; one shared
    # word-start check in front of the alternatives keeps matching fast on long prompts
    words.sort(key=len, reverse=True)
    parts = [f"(?<!\\w)(?:{'|'.join(words)})"] if words else []
    return re.compile("|".join([*parts, *sorted(anywhere, key=len, reverse=True)]), re.IGNORECASE)


PHOTO_MEDIUM = (
    *("photo", "photograph*", "photographic", "photoshoot", "photo shoot", "snapshot", "selfie", "headshot"),
    *("polaroid", "instant film", "film still"),
    *("foto*", "fotograf*", "photographie*", "写真", "照片", "摄影", "사진", "фото*"),
)

# Non-photographic media, grouped: two groups in one prompt is a combination; photo plus any is a conflict.
ART_MEDIA: dict[str, tuple[str, ...]] = {
    "painting": (
        *("painting*", "painterly", "oil paint*", "acrylic paint*", "oil on canvas", "watercolo*", "gouache"),
        *("fresco", "impasto", "tempera", "pintura", "peinture", "gemälde", "malerei", "dipinto", "acuarela"),
        *("aquarel*", "油画", "水彩", "絵画", "картин*", "акварел*", "живопис*"),
    ),
    "drawing": (
        *("drawing*", "sketch*", "pencil drawing*", "pencil sketch*", "colored pencil*", "graphite"),
        *("charcoal drawing*", "charcoal sketch*", "ink drawing*", "pen and ink", "ink wash", "line art"),
        *("lineart", "doodle*", "crayon drawing*", "dibujo", "dessin", "zeichnung", "素描", "スケッチ", "рисун*"),
    ),
    "illustration": (
        *("illustrat*", "digital art", "concept art", "vector art", "vector illustration*", "flat design"),
        *("storybook", "ilustraci*", "插画", "イラスト", "일러스트"),
    ),
    "cartoon": (
        *("anime", "manga", "cartoon*", "comic", "comic book", "cel shad*", "chibi", "アニメ", "漫画", "动漫"),
        *("卡通", "мульт*", "аниме"),
    ),
    "3d": ("3d", "cgi", "render", "rendered", "rendering", "octane", "unreal engine", "low poly", "claymation"),
    "pixel": ("pixel art", "8-bit", "16-bit", "pixelated"),
    "print": ("woodcut", "linocut", "etching", "lithograph*", "screen print*", "ukiyo-e", "collage", "papercut"),
    "art reference": ("re:in\\s+the\\s+style\\s+of", "re:style\\s+of", "artwork*", "art style"),
}

# A medium was named, but not which kind ("cinematic style", "a poster").
NEUTRAL_MEDIUM = ("style", "aesthetic", "estilo", "stil", "スタイル", "风格")

CAMERA = (
    *("lens*", "re:\\d+\\s?mm", "re:f/\\d+(?:\\.\\d+)?", "aperture", "bokeh", "depth of field", "dof"),
    *("shot on", "shot with", "camera*", "canon", "nikon", "leica", "hasselblad", "fujifilm", "fuji"),
    *("kodak", "portra", "ektar", "cinestill", "kodachrome", "ilford", "film stock", "re:iso\\s?\\d+"),
    *("shutter", "telephoto", "wide-angle", "wide angle", "fisheye", "fish-eye", "macro", "tilt-shift"),
    *("medium format", "large format", "35mm", "dslr", "mirrorless", "disposable camera", "iphone"),
    *("objetivo", "objectif", "objektiv", "obiettivo", "レンズ", "镜头", "렌즈", "объектив*", "камер*"),
)

LIGHTING = (
    *("light", "lighting", "lit", "backlight*", "backlit", "sunlit", "moonlit", "candlelit", "lamplit"),
    *("sunlight", "moonlight", "daylight", "candlelight", "lamplight", "firelight", "starlight"),
    *("twilight", "highlight*", "rim light", "spotlight*", "floodlight*", "streetlight*", "neon", "glow*"),
    *("shadow*", "sunset*", "sunrise*", "dusk", "dawn", "golden hour", "blue hour", "night*", "midnight"),
    *("evening", "morning", "afternoon", "noon", "midday", "overcast", "sunny", "cloudy", "chiaroscuro"),
    *("illuminat*", "luminous", "dark", "darkness", "dim", "dimly", "bright", "brightly", "softbox"),
    *("flash", "strobe", "lantern*", "candle*", "sun", "sunbeam*", "sunshine", "silhouett*"),
    *("luz", "luces", "iluminaci*", "lumière*", "éclairage", "licht*", "beleucht*", "luce", "luci"),
    *("illuminazion*", "atardecer", "amanecer", "anochecer", "noche", "nuit", "nacht", "notte", "crepúsculo"),
    *("crépuscule", "dämmerung", "tramonto", "alba", "aube", "coucher de soleil", "sonnenuntergang"),
    *("sol", "soleil", "sonne", "pôr do sol", "luar"),
    *("光", "灯", "夜", "夕", "黄昏", "日落", "日出", "朝日", "月光", "阳光", "陽", "빛", "조명", "밤", "노을", "햇살"),
    *("свет*", "освещ*", "ноч*", "закат*", "рассвет*", "солн*", "сумер*", "лунн*"),
)

COMPOSITION = (
    *("composition", "composed", "framing", "framed", "close-up", "closeup", "close up", "extreme close"),
    *("wide shot", "medium shot", "long shot", "full shot", "full body", "full-body", "full length"),
    *("head and shoulders", "three-quarter", "waist-up", "waist up", "from above", "from below"),
    *("from behind", "side view", "front view", "top view", "top-down", "top down", "overhead"),
    *("bird's-eye", "birds-eye", "bird's eye", "aerial", "drone", "low angle", "high angle", "eye level"),
    *("dutch angle", "worm's-eye", "centered", "centred", "symmetr*", "rule of thirds", "negative space"),
    *("leading lines", "foreground", "background", "in the distance", "panoram*", "vista", "flat lay"),
    *("isometric", "in profile", "cropped", "establishing shot", "over-the-shoulder", "over the shoulder"),
    *("pov", "point of view", "first-person", "off-center", "off-centre", "silhouett*"),
    *("primer plano", "plano general", "plano medio", "gros plan", "plan large", "nahaufnahme"),
    *("vista aérea", "vue aérienne", "encuadre", "cadrage", "composici*", "kompositi*", "composizion*"),
    *("primo piano", "特写", "近景", "远景", "俯瞰", "構図", "构图", "クローズアップ", "클로즈업", "구도"),
    *("крупн* план*", "композиц*", "вид сверху"),
)

DETAIL = (
    *("detail*", "intricate*", "textur*", "grain", "grainy", "pores", "tactile", "weathered", "crisp"),
    *("detall*", "détail*", "dettagl*", "细节", "質感", "纹理", "디테일", "질감", "детал*", "текстур*"),
)

PALETTE = (
    *("re:colou?r\\w*", "palette", "tones", "tonal", "hue*", "muted", "vibrant", "vivid"),
    *("saturat*", "desaturat*", "pastel*", "monochrom*", "black and white", "black-and-white", "b&w"),
    *("sepia", "teal and orange", "earthy", "earth tones", "washed-out", "faded", "duotone", "grading"),
    *("colore*", "couleur*", "farb*", "色", "색", "цвет*"),
)

REALISM = ("photorealis*", "photoreal", "realistic", "hyperrealis*", "hyper-realis*", "lifelike", "true-to-life")

# What kind of subject leads the prompt decides the lens and framing added for it.
CLOSE_SUBJECTS = (
    *("product*", "bottle*", "watch", "ring", "jewel*", "perfume", "cosmetic*", "food", "dish", "plate"),
    *("cake*", "coffee", "cup", "mug", "sneaker*", "shoe*", "flower*", "insect*", "bee", "butterfl*"),
    *("leaf", "leaves", "dew", "droplet*", "pastry", "dessert*", "cocktail*", "wine", "bowl", "fruit*"),
)
PORTRAIT_SUBJECTS = (
    *("portrait*", "face", "faces", "woman", "women", "man", "men", "girl*", "boy*", "person", "child*"),
    *("kid*", "baby", "grandmother", "grandfather", "bride", "groom", "chef", "model", "dancer*"),
    *("musician*", "farmer*", "fisherman", "fishermen", "worker*", "teenager*", "couple", "mujer", "hombre"),
    *("femme", "homme", "frau", "mann", "donna", "uomo", "女", "男", "女性", "男性", "여자", "남자", "женщин*"),
    *("мужчин*",),
)
WIDE_SUBJECTS = (
    *("landscape*", "mountain*", "valley", "canyon", "forest*", "ocean", "sea", "coast*", "beach*"),
    *("desert*", "lake*", "river*", "field*", "meadow*", "hill*", "skyline", "cityscape", "city", "cities"),
    *("street*", "harbor", "harbour", "village*", "countryside", "waterfall*", "glacier*", "island*"),
    *("fjord*", "dune*", "prairie", "savanna*", "tundra", "jungle", "rainforest", "architecture"),
    *("montaña*", "bosque", "playa", "mer", "montagne*", "forêt", "wald", "山", "海", "森", "街"),
)

# Tags copied from other models' prompt habits: FLUX reads them as words, they spend the token budget,
# and on FLUX.1 Krea [dev] they pull toward the glossy look the model was trained away from.
QUALITY_TAGS = (
    *("masterpiece", "best quality", "high quality", "highest quality", "top quality", "ultra quality"),
    *("8k", "4k", "16k", "uhd", "ultra hd", "hd", "hdr", "ultra detailed", "ultra-detailed", "highly detailed"),
    *("extremely detailed", "hyper detailed", "hyper-detailed", "trending on artstation", "award winning"),
    *("award-winning", "absurdres", "highres", "high res", "unreal engine 5", "octane render", "8k uhd"),
    *("ultra realistic", "ultra-realistic", "hyperrealistic", "hyper-realistic", "4k uhd"),
)

# Stable Diffusion / Midjourney syntax that FLUX reads as literal text.
FOREIGN_SYNTAX = (
    *("re:\\([^()]{1,60}:\\s?\\d(?:\\.\\d+)?\\)", "re:--(?:ar|v|no|stylize|style|chaos|q|seed|niji)\\b"),
    *("re:(?-i:BREAK)(?!\\w)", "re:\\(\\([^()]{1,60}\\)\\)", "re:\\[\\[[^\\[\\]]{1,60}\\]\\]"),
)

# Words that say the image should show text, and so deserve the text-rendering advice.
TEXT_RENDERING = (
    *("text", "sign that says", "that says", "that reads", "saying", "lettering", "caption", "typography"),
    *("headline", "title", "logo", "label that", "written", "inscription", "banner that", "neon sign"),
)


def _ratio(w: str, h: str) -> str:
    return f"re:{w}\\s?:\\s?{h}(?![\\d.])"


# Explicit orientation words; "portrait" and "landscape" alone name genres, not shapes, so they are absent.
ORIENTATION_WORDS: dict[str, tuple[str, ...]] = {
    "portrait": (
        *("vertical", "portrait orientation", "portrait format", "portrait mode", "tall image", "tall format"),
        *("phone wallpaper", "mobile wallpaper", "story format", "instagram story"),
        *(_ratio("9", "16"), _ratio("2", "3"), _ratio("4", "5"), _ratio("3", "4")),
    ),
    "landscape": (
        *("horizontal", "landscape orientation", "landscape format", "widescreen", "wide screen", "panorama"),
        *("panoramic", "cinemascope", "letterbox*", "ultrawide", "ultra-wide"),
        *(_ratio("16", "9"), _ratio("21", "9"), _ratio("2\\.35", "1"), _ratio("3", "2"), _ratio("4", "3")),
    ),
    "square": ("square format", "square image", "square crop", _ratio("1", "1")),
}

# Function words: never content, never a subject. English first, then a few other languages' commonest.
STOPWORDS = words(
    "a an the and or but nor of in on at to for from by with without into onto over under above below "
    "is are was were be been being it its this that these those there here as than then so very too "
    "some any each every all both few more most other such no not only own same can will just "
    "should would could may might must do does did has have had having he she they them his her their "
    "we our you your i me my who whom which what when where why how while through during before after "
    "again further out up down off about against between near behind beside upon within along across "
    "around toward towards among also like "
    "el la los las un una unos unas de del y o en con sin por para al es son que su sus "
    "le les une des du et ou dans avec sans pour sur au aux est sont qui ce cette "
    "der die das ein eine einen dem den des und oder im mit ohne für auf ist sind zu von "
    "il lo gli uno della delle dei degli e con senza per su nel nella è sono "
    "os as um uma do da dos das em com sem para no na"
)

# Function words that give a Latin-script prompt away as not English (used only to suggest translating).
FOREIGN_FUNCTION_WORDS = words(
    "el los las un una unos unas del al en y con sin por para que "
    "le les une des du et dans avec sur aux est sont qui cette "
    "der das ein eine einen dem und oder im mit ohne für auf ist sind von "
    "il lo gli della delle dei degli nel nella senza sono "
    "um uma da dos das em com sem na"
)
ENGLISH_FUNCTION_WORDS = words("a an the and of in on at to with is are from by for into under over near its this that")

# Concrete, countable things a rewrite may not bring into a picture the user did not ask for.
SUBJECT_NOUNS = words(
    # people
    "man men woman women girl boy child children kid baby person people crowd family couple soldier knight "
    "wizard witch king queen prince princess chef doctor nurse farmer fisherman sailor pilot astronaut "
    "robot cowboy dancer musician singer painter student teacher worker monk priest bride groom model "
    "athlete runner skater surfer warrior ninja samurai pirate viking angel demon ghost zombie vampire "
    "mermaid elf fairy giant clown police officer firefighter grandmother grandfather mother father "
    "daughter son friend stranger tourist pedestrian audience spectator "
    # animals
    "cat kitten dog puppy horse pony cow bull sheep lamb goat pig chicken rooster duck goose swan bird "
    "eagle hawk falcon owl parrot crow raven pigeon seagull penguin flamingo peacock hummingbird fox "
    "wolf bear deer elk moose rabbit hare squirrel mouse rat hedgehog raccoon badger otter beaver lion "
    "tiger leopard cheetah jaguar panther elephant giraffe zebra rhino hippo monkey gorilla chimpanzee "
    "kangaroo koala panda camel llama alpaca whale dolphin shark octopus jellyfish turtle tortoise "
    "frog toad snake lizard crocodile alligator dragon unicorn phoenix griffin butterfly moth bee wasp "
    "ant spider beetle dragonfly ladybug snail crab lobster fish salmon goldfish bat "
    # vehicles
    "car cars truck bus van taxi bicycle bike motorcycle scooter boat ship yacht sailboat canoe kayak "
    "submarine airplane plane jet helicopter rocket spaceship train tram tractor tank carriage "
    # objects and structures
    "chair table sofa couch bed lamp candle book books cup mug glass bottle vase umbrella hat helmet "
    "sword shield gun guitar piano violin drum phone laptop computer camera clock watch ring necklace "
    "crown mask balloon kite flag ball toy doll teddy backpack suitcase basket bucket ladder key "
    "house cabin cottage castle tower bridge church temple cathedral lighthouse windmill barn tent "
    "fountain statue monument pyramid skyscraper"
)
