//! The small vocabularies the dataset is drawn from: names per locale, e-mail domains, SSID
//! styles, camera nicknames, device models, Italian places. Kept apart from the generators so
//! that the generators read as rules and these as data.

pub const FIRST_EN: &[&str] = &[
    "James",
    "Mary",
    "John",
    "Patricia",
    "Robert",
    "Jennifer",
    "Michael",
    "Linda",
    "William",
    "Elizabeth",
    "David",
    "Sarah",
    "Emily",
    "Oliver",
    "Amelia",
    "Harry",
    "Chloe",
    "Jack",
    "Olivia",
    "Daniel",
    "Megan",
    "Tyler",
    "Brittany",
    "Connor",
];
pub const LAST_EN: &[&str] = &[
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Taylor",
    "Anderson", "Thomas", "Jackson", "White", "Harris", "Clarke", "Walker", "Wright", "Evans",
    "O'Brien", "Murphy", "Nguyen", "Patel", "Robinson", "Hughes",
];
pub const FIRST_DE: &[&str] = &[
    "Lukas",
    "Jürgen",
    "Anna",
    "Jörg",
    "Sophie",
    "Maximilian",
    "Katharina",
    "Felix",
    "Lena",
    "Björn",
    "Sabine",
    "Uwe",
    "Hannah",
    "Stefan",
    "Ute",
    "Klaus",
    "Tobias",
    "Götz",
    "Mia",
    "Dieter",
];
pub const LAST_DE: &[&str] = &[
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Schulz",
    "Hoffmann",
    "Schäfer",
    "Koch",
    "Bauer",
    "Richter",
    "Klein",
    "Wolf",
    "Schröder",
    "Neumann",
    "Zimmermann",
    "Krüger",
    "Groß",
    "Köhler",
];
/// Italian first names with their sex, which the codice fiscale encodes.
pub const FIRST_IT: &[(&str, bool)] = &[
    ("Giuseppe", false),
    ("Maria", true),
    ("Giovanni", false),
    ("Francesca", true),
    ("Luca", false),
    ("Giulia", true),
    ("Marco", false),
    ("Chiara", true),
    ("Alessandro", false),
    ("Sara", true),
    ("Matteo", false),
    ("Elena", true),
    ("Andrea", false),
    ("Federica", true),
    ("Niccolò", false),
    ("Lorenzo", false),
    ("Martina", true),
    ("Davide", false),
    ("Ilaria", true),
    ("Salvatore", false),
    ("Noemi", true),
];
pub const LAST_IT: &[&str] = &[
    "Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci", "Marino",
    "Greco", "Bruno", "Gallo", "Conti", "De Luca", "Mancini", "Costa", "Giordano", "Rizzo",
    "Lombardi", "Moretti", "D'Angelo", "Fabbri",
];
pub const FIRST_FR: &[&str] = &[
    "Françoise",
    "Jean",
    "Marie",
    "Pierre",
    "Camille",
    "Louis",
    "Léa",
    "Hugo",
    "Chloé",
    "Théo",
    "Manon",
    "Nicolas",
    "Élodie",
    "Julien",
    "Inès",
    "Mathieu",
    "Gaëlle",
    "Loïc",
    "Hélène",
];
pub const LAST_FR: &[&str] = &[
    "Martin",
    "Bernard",
    "Dubois",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
    "Laurent",
    "Lefèvre",
    "Michel",
    "Fontaine",
    "Rousseau",
    "Girard",
    "Bonnet",
    "Mercier",
    "Lemaître",
    "Faure",
];
pub const FIRST_ES: &[&str] = &[
    "José", "María", "Antonio", "Carmen", "Manuel", "Lucía", "Javier", "Sofía", "Álvaro", "Paula",
    "Sergio", "Marta", "Raúl", "Iñigo", "Nuria", "Begoña", "Andrés", "Jesús", "Ainhoa",
];
pub const LAST_ES: &[&str] = &[
    "García",
    "Fernández",
    "González",
    "Rodríguez",
    "López",
    "Martínez",
    "Sánchez",
    "Pérez",
    "Gómez",
    "Martín",
    "Jiménez",
    "Ruiz",
    "Hernández",
    "Díaz",
    "Moreno",
    "Muñoz",
    "Álvarez",
    "Romero",
    "Navarro",
    "Ibáñez",
];

/// Providers anyone may use, whatever their country.
pub const DOMAINS_GLOBAL: &[(&str, u32)] = &[
    ("gmail.com", 40),
    ("outlook.com", 12),
    ("yahoo.com", 10),
    ("icloud.com", 8),
    ("hotmail.com", 8),
    ("proton.me", 3),
    ("aol.com", 2),
];
pub const DOMAINS_US: &[&str] = &["comcast.net", "att.net", "verizon.net", "me.com"];
pub const DOMAINS_GB: &[&str] = &["btinternet.com", "sky.com", "yahoo.co.uk", "hotmail.co.uk"];
pub const DOMAINS_DE: &[&str] = &["gmx.de", "web.de", "t-online.de", "posteo.de", "gmx.net"];
pub const DOMAINS_IT: &[&str] = &[
    "libero.it",
    "virgilio.it",
    "alice.it",
    "tiscali.it",
    "hotmail.it",
];
pub const DOMAINS_FR: &[&str] = &[
    "orange.fr",
    "free.fr",
    "laposte.net",
    "sfr.fr",
    "wanadoo.fr",
];
pub const DOMAINS_ES: &[&str] = &["telefonica.net", "yahoo.es", "hotmail.es", "movistar.es"];

/// US area codes in service in large cities (all valid for libphonenumber).
pub const US_AREA_CODES: &[u16] = &[
    201, 202, 203, 206, 212, 213, 214, 215, 216, 303, 305, 310, 312, 313, 314, 404, 408, 412, 415,
    425, 469, 503, 504, 510, 512, 602, 608, 612, 617, 619, 646, 650, 702, 703, 704, 713, 718, 720,
    773, 801, 813, 818, 847, 858, 904, 916, 917, 919, 949, 971,
];
/// German mobile prefixes (after +49) with their subscriber lengths.
pub const DE_MOBILE: &[(&str, &[usize])] = &[
    ("151", &[8]),
    ("152", &[8]),
    ("157", &[8]),
    ("160", &[7, 8]),
    ("162", &[7, 8]),
    ("170", &[7]),
    ("171", &[7]),
    ("172", &[7]),
    ("175", &[7]),
    ("176", &[8]),
    ("177", &[7]),
];
/// UK mobile number ranges (7xx after +44) in which every following digit is allocated.
pub const GB_MOBILE: &[&str] = &[
    "740", "741", "742", "743", "744", "746", "747", "748", "749", "751", "753", "754", "755",
    "756", "757", "758", "759", "771", "772", "773", "774", "775", "776", "777", "780", "781",
    "784", "785", "786", "787", "788", "789", "790", "792", "794", "795", "796", "797", "798",
    "799",
];
/// Second digits after the French mobile 6 and 7 whose whole block is allocated.
pub const FR_MOBILE_6: &[u8] = b"01245678";
pub const FR_MOBILE_7: &[u8] = b"3456789";

/// Camera nicknames people give, in the customers' languages.
pub const NICKNAMES: &[&str] = &[
    "Baby room",
    "Front door",
    "Garage",
    "Nursery",
    "Living room",
    "Kitchen",
    "Backyard",
    "Driveway",
    "Porch",
    "Office",
    "Basement",
    "Dog cam",
    "Cat cam",
    "Bedroom",
    "Hallway",
    "Back door",
    "Side gate",
    "Shed",
    "Kids room",
    "Attic",
    "Cameretta",
    "Soggiorno",
    "Ingresso",
    "Cucina",
    "Giardino",
    "Taverna",
    "Haustür",
    "Kinderzimmer",
    "Wohnzimmer",
    "Küche",
    "Garten",
    "Keller",
    "Flur",
    "Salon",
    "Chambre bébé",
    "Entrée",
    "Cuisine",
    "Jardin",
    "Entrada",
    "Salón",
    "Habitación niños",
    "Terraza",
    "Grandma's room",
    "Emma's room",
];

/// A device model: its code, the serial prefix of its family, its firmware line and its share.
pub struct Model {
    pub code: &'static str,
    pub serial_prefix: &'static str,
    pub firmware: &'static str,
    pub weight: u32,
    pub sku_price_cents: i64,
    pub shipping_grams: i64,
}

pub const MODELS: &[Model] = &[
    Model {
        code: "HC-CAM-V3",
        serial_prefix: "HC3",
        firmware: "4.36",
        weight: 34,
        sku_price_cents: 3598,
        shipping_grams: 420,
    },
    Model {
        code: "HC-CAM-V2",
        serial_prefix: "HC2",
        firmware: "4.9",
        weight: 22,
        sku_price_cents: 1999,
        shipping_grams: 380,
    },
    Model {
        code: "HC-PAN-V2",
        serial_prefix: "HP2",
        firmware: "4.49",
        weight: 16,
        sku_price_cents: 3499,
        shipping_grams: 610,
    },
    Model {
        code: "HC-DB-PRO",
        serial_prefix: "HDB",
        firmware: "4.25",
        weight: 10,
        sku_price_cents: 5999,
        shipping_grams: 540,
    },
    Model {
        code: "HC-OUTDOOR",
        serial_prefix: "HOD",
        firmware: "4.17",
        weight: 12,
        sku_price_cents: 4999,
        shipping_grams: 890,
    },
    Model {
        code: "HC-FLOOD-V2",
        serial_prefix: "HFL",
        firmware: "4.28",
        weight: 6,
        sku_price_cents: 8999,
        shipping_grams: 1650,
    },
];

/// Accessories sold alongside the cameras (SKU, unit price in cents, shipping grams).
pub const ACCESSORIES: &[(&str, i64, i64)] = &[
    ("HC-SD-32GB", 999, 60),
    ("HC-MOUNT-WALL", 1299, 240),
    ("HC-SOLAR-PANEL", 3999, 1150),
    ("HC-CHIME", 2499, 310),
    ("HC-CABLE-6M", 899, 280),
    ("HC-SENSE-KIT", 4999, 700),
];
pub const COLOURS: &[&str] = &["WHT", "BLK", "GRY"];

/// Organisationally unique identifiers the camera vendor's Wi-Fi modules ship with.
pub const OUIS: &[[u8; 3]] = &[
    [0x2C, 0xAA, 0x8E],
    [0x7C, 0x78, 0xB2],
    [0xD0, 0x3F, 0x27],
    [0xA4, 0xDA, 0x22],
    [0x80, 0x48, 0x2C],
];

/// Cloud regions of the telemetry pipeline.
pub const REGIONS: &[&str] = &[
    "us-west-2",
    "us-east-1",
    "ca-central-1",
    "eu-central-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-south-1",
];

/// Italian birth places with their cadastral (Belfiore) codes, used by the codice fiscale.
pub const COMUNI: &[(&str, &str)] = &[
    ("Roma", "H501"),
    ("Milano", "F205"),
    ("Napoli", "F839"),
    ("Torino", "L219"),
    ("Palermo", "G273"),
    ("Genova", "D969"),
    ("Bologna", "A944"),
    ("Firenze", "D612"),
    ("Bari", "A662"),
    ("Catania", "C351"),
    ("Venezia", "L736"),
    ("Verona", "L781"),
    ("Padova", "G224"),
    ("Trieste", "L424"),
];
/// Italian cities of residence: name, province, first and last postcode of the city.
pub const CITTA: &[(&str, &str, u32, u32)] = &[
    ("Roma", "RM", 118, 199),
    ("Milano", "MI", 20121, 20162),
    ("Napoli", "NA", 80121, 80147),
    ("Torino", "TO", 10121, 10156),
    ("Palermo", "PA", 90121, 90151),
    ("Genova", "GE", 16121, 16167),
    ("Bologna", "BO", 40121, 40141),
    ("Firenze", "FI", 50121, 50145),
    ("Bari", "BA", 70121, 70132),
    ("Catania", "CT", 95121, 95131),
    ("Venezia", "VE", 30121, 30176),
    ("Verona", "VR", 37121, 37142),
    ("Padova", "PD", 35121, 35143),
    ("Trieste", "TS", 34121, 34151),
];
pub const STREET_TYPES: &[&str] = &[
    "Via", "Via", "Via", "Viale", "Piazza", "Corso", "Largo", "Vicolo",
];
pub const STREETS: &[&str] = &[
    "Roma",
    "Garibaldi",
    "Mazzini",
    "Cavour",
    "Dante Alighieri",
    "Giuseppe Verdi",
    "Marconi",
    "XX Settembre",
    "Vittorio Emanuele II",
    "Matteotti",
    "Gramsci",
    "dei Mille",
    "San Francesco",
    "Nazionale",
    "della Repubblica",
    "Leopardi",
    "Manzoni",
    "Trieste",
];
/// Italian bank codes (ABI) of large banks.
pub const ABI: &[&str] = &[
    "03069", "02008", "05034", "01030", "03111", "05696", "06230", "03032",
];
