"""Word lists for English normalisation: abbreviations, units, currencies, months, symbols, Roman cues."""

from __future__ import annotations

# Read the same wherever they stand (with their period).
ABBREVIATIONS = {
    "Jr.": "Junior", "Sr.": "Senior", "Ave.": "Avenue", "Blvd.": "Boulevard", "Rd.": "Road",
    "Ln.": "Lane", "Apt.": "Apartment", "Ste.": "Suite", "Hwy.": "Highway", "Inc.": "Incorporated",
    "Ltd.": "Limited", "Corp.": "Corporation",
    "Co.": "Company", "Bros.": "Brothers", "Dept.": "Department", "Univ.": "University",
    "approx.": "approximately", "etc.": "et cetera", "e.g.": "for example", "i.e.": "that is",
    "vs.": "versus", "vs": "versus", "ca.": "circa", "Fig.": "Figure", "fig.": "figure",
    "Vol.": "Volume", "vol.": "volume", "Ch.": "Chapter", "ch.": "chapter", "Mx.": "Mix",
    "Jan.": "January", "Feb.": "February", "Mar.": "March", "Apr.": "April", "Jun.": "June",
    "Jul.": "July", "Aug.": "August", "Sep.": "September", "Sept.": "September", "Oct.": "October",
    "Nov.": "November", "Dec.": "December", "U.S.": "U S", "U.S.A.": "U S A", "U.K.": "U K",
    "U.N.": "U N", "E.U.": "E U", "Ph.D.": "P H D", "w/": "with", "w/o": "without",
    "Mr.": "Mister", "Mrs.": "Missus", "Ms.": "Miz", "Prof.": "Professor", "Gen.": "General",
    "Capt.": "Captain", "Lt.": "Lieutenant", "Col.": "Colonel", "Sgt.": "Sergeant", "Gov.": "Governor",
    "Sen.": "Senator", "Rep.": "Representative", "Rev.": "Reverend", "Hon.": "Honorable",
    "Pres.": "President", "Mt.": "Mount", "Ft.": "Fort", "Mr": "Mister", "Mrs": "Missus",
}
# Titles: before a name they never end a sentence, so their period is not a full stop.
TITLES = frozenset({"Mr.", "Mrs.", "Ms.", "Mx.", "Prof.", "Gen.", "Capt.", "Lt.", "Col.", "Sgt.", "Gov.",
                    "Sen.", "Rep.", "Rev.", "Hon.", "Pres.", "Mt.", "Ft.", "Dr.", "St.", "Mr", "Mrs",
                    "Dr", "St"})
# Before a name a title, after a name (or at the end) a street word.
BEFORE_OR_AFTER = {"Dr.": ("Doctor", "Drive"), "St.": ("Saint", "Street"), "Dr": ("Doctor", "Drive"),
                   "St": ("Saint", "Street")}
NUMBER_ABBREVIATIONS = {"No.": "number", "no.": "number", "Nos.": "numbers", "pp.": "pages",
                        "p.": "page", "#": "number"}

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
MONTH_INDEX = {m.lower(): i for i, m in enumerate(MONTHS)}
MONTH_INDEX.update({m[:3].lower() + ".": i for i, m in enumerate(MONTHS)})
MONTH_INDEX.update({m[:3].lower(): i for i, m in enumerate(MONTHS) if m != "May"})
MONTH_INDEX["sept."] = 8

# symbol → (singular, plural) name of the currency's main and minor units
CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"), "US$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
    "¥": ("yen", "yen", "", ""), "₹": ("rupee", "rupees", "paisa", "paise"),
    "₩": ("won", "won", "", ""), "₽": ("ruble", "rubles", "kopek", "kopeks"),
    "₿": ("bitcoin", "bitcoins", "", ""), "C$": ("Canadian dollar", "Canadian dollars", "cent", "cents"),
    "A$": ("Australian dollar", "Australian dollars", "cent", "cents"),
}
CURRENCY_CODES = {
    "USD": ("US dollar", "US dollars", "cent", "cents"), "EUR": CURRENCIES["€"], "GBP": CURRENCIES["£"],
    "JPY": CURRENCIES["¥"], "INR": CURRENCIES["₹"], "CAD": CURRENCIES["C$"], "AUD": CURRENCIES["A$"],
    "CHF": ("Swiss franc", "Swiss francs", "centime", "centimes"), "CNY": ("yuan", "yuan", "", ""),
    "RMB": ("yuan", "yuan", "", ""),
}
SCALE_WORDS = {"k": "thousand", "K": "thousand", "m": "million", "M": "million", "mn": "million",
               "bn": "billion", "B": "billion", "b": "billion", "T": "trillion", "tn": "trillion"}
SCALE_NAMES = frozenset({"hundred", "thousand", "million", "billion", "trillion"})

# unit → (singular, plural); matched case-sensitively first, then in lower case
UNITS = {
    "km": ("kilometer", "kilometers"), "m": ("meter", "meters"), "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"), "µm": ("micrometer", "micrometers"),
    "nm": ("nanometer", "nanometers"), "mi": ("mile", "miles"), "ft": ("foot", "feet"),
    "yd": ("yard", "yards"), "kg": ("kilogram", "kilograms"), "g": ("gram", "grams"),
    "mg": ("milligram", "milligrams"), "lb": ("pound", "pounds"), "lbs": ("pound", "pounds"),
    "oz": ("ounce", "ounces"), "L": ("liter", "liters"), "l": ("liter", "liters"),
    "ml": ("milliliter", "milliliters"), "mL": ("milliliter", "milliliters"),
    "gal": ("gallon", "gallons"), "mph": ("mile per hour", "miles per hour"),
    "km/h": ("kilometer per hour", "kilometers per hour"), "kph": ("kilometer per hour", "kilometers per hour"),
    "m/s": ("meter per second", "meters per second"), "°C": ("degree Celsius", "degrees Celsius"),
    "°F": ("degree Fahrenheit", "degrees Fahrenheit"), "°": ("degree", "degrees"),
    "Hz": ("hertz", "hertz"), "kHz": ("kilohertz", "kilohertz"), "MHz": ("megahertz", "megahertz"),
    "GHz": ("gigahertz", "gigahertz"), "W": ("watt", "watts"), "kW": ("kilowatt", "kilowatts"),
    "kWh": ("kilowatt hour", "kilowatt hours"), "V": ("volt", "volts"), "mA": ("milliamp", "milliamps"),
    "mAh": ("milliamp hour", "milliamp hours"), "KB": ("kilobyte", "kilobytes"),
    "kB": ("kilobyte", "kilobytes"), "MB": ("megabyte", "megabytes"), "GB": ("gigabyte", "gigabytes"),
    "TB": ("terabyte", "terabytes"), "Mbps": ("megabit per second", "megabits per second"),
    "Gbps": ("gigabit per second", "gigabits per second"), "ms": ("millisecond", "milliseconds"),
    "sec": ("second", "seconds"), "secs": ("second", "seconds"), "min": ("minute", "minutes"),
    "mins": ("minute", "minutes"), "h": ("hour", "hours"), "hr": ("hour", "hours"),
    "hrs": ("hour", "hours"), "dB": ("decibel", "decibels"), "px": ("pixel", "pixels"),
    "fps": ("frame per second", "frames per second"), "rpm": ("revolution per minute", "revolutions per minute"),
    "x": ("times", "times"), "ha": ("hectare", "hectares"), "sq ft": ("square foot", "square feet"),
}
# Units that are also common words: read as units only right after a number in the same token or
# as the next token after a number (never "5 in", "3 a").
SYMBOLS = {
    "&": "and", "+": "plus", "=": "equals", "@": "at", "%": "percent", "×": "times", "÷": "divided by",
    "±": "plus or minus", "≈": "approximately", "~": "about", "<": "less than", ">": "greater than",
    "≤": "less than or equal to", "≥": "greater than or equal to", "≠": "is not equal to", "→": "to",
    "©": "copyright", "®": "", "™": "", "§": "section", "¶": "paragraph", "°": "degrees", "*": "times",
    "^": "to the power of", "/": "slash", "\\": "backslash", "|": "", "•": "", "·": "",
}
# Dropped when they stick to a word ("Acme™"), spoken when they stand alone.
SILENT_MARKS = frozenset("®™")

ROMAN_CARDINAL_CUES = frozenset({
    "chapter", "part", "volume", "vol.", "book", "act", "scene", "section", "war", "phase", "stage",
    "level", "type", "class", "article", "title", "appendix", "episode", "season", "round", "grade",
    "category", "schedule", "unit", "apollo", "rocky", "fantasy", "bowl", "generation", "vatican",
    "psalm", "canto", "division", "league", "mark", "tier", "star", "wars",
})
REGNAL_NAMES = frozenset({
    "henry", "edward", "george", "louis", "charles", "elizabeth", "james", "william", "richard", "john",
    "paul", "pius", "benedict", "gregory", "leo", "innocent", "clement", "peter", "frederick", "philip",
    "napoleon", "alexander", "nicholas", "ivan", "catherine", "mary", "victoria", "anne", "ferdinand",
    "isabella", "juan", "carlos", "felipe", "gustav", "olaf", "harald", "christian", "wilhelm",
    "friedrich", "ludwig", "otto", "rudolf", "constantine", "ramesses", "mehmed", "suleiman", "selim",
    "murad", "urban", "boniface", "sixtus", "alfonso", "stephen", "edmund", "harold", "malcolm",
    "david", "robert", "francis", "henri", "victor", "umberto", "leopold", "haakon",
    "carl", "margrethe", "willem", "albert", "baudouin", "rama", "thutmose", "amenhotep", "xerxes",
    "darius", "cyrus", "antiochus", "ptolemy", "cleopatra", "charlemagne", "pope", "king", "queen",
})
# Words of Roman letters that are read as words or acronyms, never as numerals.
ROMAN_EXCLUDED = frozenset({"CD", "DC", "MD", "CV", "DL", "LI", "MI", "CC", "CL", "XL", "MC", "DI", "ID",
                            "MM", "MIX", "DIV", "CIV", "LCD", "MCD", "CDC", "DVD", "MDC", "CLI", "DIX",
                            "LIV", "VIC", "DCC", "MCC", "CCC", "XXX", "MMM", "XXL", "XXXL", "LVI", "MIL",
                            "DIM", "MID", "VIX", "LIM", "LID", "MDX", "CLX"})
TLDS = frozenset({"com", "org", "net", "io", "gov", "edu", "co", "uk", "de", "fr", "jp", "cn", "ai",
                  "dev", "app", "info", "biz", "us", "ca", "au", "eu", "me", "tv", "ly", "in", "ru", "es",
                  "it", "nl", "se", "no", "ch", "be", "at", "nz", "br", "mx", "kr", "tw", "hk", "sg"})
URL_SYMBOLS = {".": "dot", "/": "slash", "-": "dash", "_": "underscore", ":": "colon", "?": "question mark",
               "=": "equals", "&": "and", "#": "hash", "~": "tilde", "+": "plus", "%": "percent", "@": "at"}
YEAR_CUES = frozenset({"in", "since", "of", "from", "by", "until", "till", "year", "around", "circa",
                       "before", "after", "during", "between", "and", "to", "early", "late", "mid",
                       "summer", "winter", "spring", "autumn", "fall", "class", "vintage", "model",
                       "ca.", "c.", "through"})
