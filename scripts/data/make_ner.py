#!/usr/bin/env python3
"""Writes a seeded synthetic "extract the people and places" dataset in chat JSONL.

Each record is a user turn (a short instruction + one sentence) and the assistant's answer as
compact JSON, {"people": [...], "places": [...]}, names in order of appearance. The train, dev
and test splits draw their names and sentence templates from disjoint pools, so dev/test measure
generalization to unseen names and phrasings. train_pref.jsonl / dev_pref.jsonl hold preference
pairs for DPO (chosen = the correct answer, rejected = a plausible mistake).

Python 3 standard library only; the output depends only on the arguments (own PRNG, no hash
ordering). Usage: make_ner.py --out DIR [--seed N] [--train N] [--dev N] [--test N]
"""

import argparse
import json
import os
import sys

INSTRUCTION = "Extract the people and places from the sentence. Answer with JSON."

FIRST_NAMES = """
Ana Bruno Carla Diego Elena Felix Greta Hugo Irene Jonas Karin Lucas Marta Nico Olga Pablo
Rosa Simon Tania Victor Wanda Xavier Yara Zoltan Aisha Bilal Chloe Dmitri Emeka Fatima Goran
Hana Ibrahim Julia Kenji Leila Mateo Nadia Omar Priya Quentin Rania Sven Tomasz Ursula Vera
Wei Yusuf Zara Amara Bjorn Camila Dario Esther Farid Gemma Hiro Ines Jakob Kofi Lina Malik
Noor Oscar Petra Rafael Sofia Tariq Uma Viktor Yuki Anders Beatriz Cyrus Daria Elif Fabio
Gustav Helga Ivan Jana Kemal Lucia Marek Nina Otto Paula Ravi Selma Teo Valentina Willem Ximena
Yosef Zeynep Alma Boris Clara Dev Erik Frida Gabriel Hanna Ilya Joana Karl Lars Mira Nils Ola
Pedro Rina Stefan Tove Ulrich Vilma Wiktor Aurelio Bianca Cosmin Delia Emil Flavia Giorgio
Hedda Ingrid Jorge Katya Leon Milan Nora Orla Piotr Renata Sanjay Talia Umar Veda Yannick
Ahmed Brigitte Cesar Dagny Efua Gunnar Hamid Ivana Jiro Kaveh Lotte Mihai Nuno Oksana Radu
Saoirse Teodor Ugo Vesna Wim Zofia Andrés José Zoë Björn Łukasz
""".split()

SURNAMES = """
Silva Novak Berg Costa Meyer Rossi Dubois Jensen Kowalski Santos Fischer Moreau Lindqvist
Petrov Okafor Haddad Tanaka Nakamura Garcia Lopez Schmidt Weber Kruger Ivanova Horvat Popescu
Nielsen Andersen Ferreira Almeida Romano Ricci Bianchi Marino Greco Lambert Fontaine Girard
Vasquez Morales Ortega Castillo Mendes Barros Pereira Kovac Nagy Szabo Toth Varga Papadopoulos
Georgiou Demir Yilmaz Kaya Sahin Ozturk Mensah Owusu Adeyemi Nwosu Banda Phiri Abebe Tesfaye
Kim Park Choi Nguyen Tran Pham Hoang Sato Suzuki Watanabe Ito Yamamoto Chen Wang Liu Zhang
Singh Patel Sharma Gupta Iyer Rao Khan Ali Hussain Rahman Larsen Holm Dahl Strand Lund Eklund
Virtanen Korhonen Makinen Nieminen Brennan Walsh Murphy Byrne Quinn Doyle Evans Hughes Price
Foster Hale Mercer Ward Sutton Blake Reyes Cruz Navarro Ramos Müller Sørensen Ångström
""".split()

PLACES = """
Oslo Lisbon Porto Madrid Seville Valencia Lyon Marseille Nantes Bordeaux Hamburg Munich Leipzig
Dresden Cologne Vienna Graz Zurich Geneva Basel Milan Turin Naples Bologna Palermo Athens
Thessaloniki Istanbul Ankara Izmir Cairo Alexandria Nairobi Mombasa Lagos Accra Dakar Casablanca
Tunis Algiers Kampala Kigali Lusaka Harare Gaborone Windhoek Luanda Maputo Karachi Lahore Delhi
Mumbai Chennai Kolkata Dhaka Kathmandu Colombo Bangkok Hanoi Manila Jakarta Surabaya Seoul Busan
Osaka Kyoto Sapporo Taipei Shanghai Beijing Chengdu Ulaanbaatar Almaty Tashkent Tbilisi Yerevan
Baku Tehran Baghdad Amman Beirut Riyadh Doha Muscat Toronto Montreal Vancouver Calgary Boston
Chicago Denver Seattle Houston Miami Phoenix Atlanta Havana Bogota Lima Quito Santiago Montevideo
Asuncion Caracas Recife Salvador Manaus Curitiba Brisbane Perth Adelaide Auckland Wellington
Reykjavik Helsinki Tallinn Riga Vilnius Warsaw Krakow Gdansk Prague Brno Bratislava Budapest
Bucharest Sofia Belgrade Zagreb Ljubljana Sarajevo Skopje Tirana Dublin Cork Glasgow Edinburgh
Cardiff Bristol Leeds Antwerp Ghent Rotterdam Utrecht Aarhus Malmö Göteborg Kraków Córdoba
São_Paulo Buenos_Aires Mexico_City New_Delhi Cape_Town Kuala_Lumpur Hong_Kong Rio_de_Janeiro
""".split()
PLACES = [p.replace("_", " ") for p in PLACES]
# A name that is both a person's and a place's (Sofia) would make answers ambiguous.
FIRST_NAMES = [n for n in FIRST_NAMES if n not in PLACES]

# {P} is a person, {L} a place. Zero, one or several of each. Disjoint per split.
TRAIN_TEMPLATES = [
    "{P} flew from {L} to {L} last spring.",
    "Yesterday {P} called {P} from a hotel in {L}.",
    "The conference in {L} was opened by {P}.",
    "{P} and {P} grew up together in {L}.",
    "After the match in {L}, {P} thanked the fans.",
    "It rained all week, so the picnic was cancelled.",
    "{P} moved to {L} in March.",
    "A letter from {L} arrived for {P} on Monday.",
    "{P}, {P} and {P} shared a flat in {L}.",
    "The train from {L} to {L} was two hours late.",
    "Nobody expected the bridge to close on Friday.",
    "{P} wrote a book about {L}.",
    "When {P} visited {L}, she also stopped in {L}.",
    "The museum in {L} hired {P} as its new director.",
    "{P} met {P} at a café in {L}.",
    "Prices rose sharply in {L} and {L} this year.",
    "{P} said the report would be ready by Tuesday.",
    "The new library opened with a speech by {P}.",
    "Our team lost the final in {L}.",
    "{P} drove through {L}, {L} and {L} in one day.",
    "According to {P}, the festival in {L} sold out in an hour.",
    "The Council approved the budget after a long debate.",
    "{P} has lived in {L} since the war.",
    "Tickets to {L} are cheaper in winter.",
    "{P} asked {P} to check the numbers again.",
    "Flights between {L} and {L} resume in June.",
    "{P} left {L} for good in 1998.",
    "The orchestra, led by {P}, toured {L} and {L}.",
    "Everyone agreed the soup needed more salt.",
    "{P} photographed the old harbour of {L}.",
]
DEV_TEMPLATES = [
    "{P} is spending the summer near {L}.",
    "The ferry to {L} was full, so {P} waited.",
    "Neither {P} nor {P} had been to {L} before.",
    "The Board will meet again next Thursday.",
    "A storm closed the airport in {L}.",
    "{P} sold the family farm outside {L} to {P}.",
    "Traffic between {L} and {L} was slow all morning.",
    "{P} won the chess tournament.",
]
TEST_TEMPLATES = [
    "{P} opened a bakery in {L} with help from {P}.",
    "The road from {L} to {L} is closed for repairs.",
    "Last night {P} gave a talk on climate.",
    "{P} and {P} are driving from {L} to {L}.",
    "Sales were flat in the third quarter.",
    "The mayor of {L} invited {P} to the ceremony.",
    "{P} keeps a small boat in {L}.",
    "Snow fell in {L} for the first time in years.",
]


class SplitMix64:
    """The same generator as train/data_order.h; deterministic on every Python version."""

    MASK = (1 << 64) - 1

    def __init__(self, seed):
        self.state = seed & self.MASK

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & self.MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & self.MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & self.MASK
        return z ^ (z >> 31)

    def below(self, n):
        threshold = ((1 << 64) - n) % n
        while True:
            r = self.next()
            if r >= threshold:
                return r % n

    def choice(self, items):
        return items[self.below(len(items))]


def split_pool(items, split):
    """Disjoint thirds-ish by position: 3/5 train, 1/5 dev, 1/5 test."""
    part = {"train": (0, 1, 2), "dev": (3,), "test": (4,)}[split]
    return [x for i, x in enumerate(items) if i % 5 in part]


def make_sentence(rng, template, firsts, lasts, places):
    """Fills the slots left to right with distinct names; returns (sentence, people, places)."""
    people, where, out = [], [], []
    i = 0
    while i < len(template):
        if template.startswith("{P}", i):
            while True:
                name = rng.choice(firsts)
                if rng.below(5) < 3:
                    name += " " + rng.choice(lasts)
                # Distinct, and no name inside another ("Ana" vs "Ana Silva").
                if all(name not in p and p not in name for p in people):
                    break
            people.append(name)
            out.append(name)
            i += 3
        elif template.startswith("{L}", i):
            while True:
                place = rng.choice(places)
                if all(place not in p and p not in place for p in where):
                    break
            where.append(place)
            out.append(place)
            i += 3
        else:
            out.append(template[i])
            i += 1
    return "".join(out), people, where


def answer(people, places):
    return json.dumps({"people": people, "places": places}, ensure_ascii=False)


def capitalized_non_entities(sentence, people, places):
    """Capitalized words that are not part of an entity: plausible false positives."""
    taken = " ".join(people + places).split()
    words = [w.strip(".,;:!?") for w in sentence.split()]
    return [w for w in words if w[:1].isupper() and w not in taken and w.isalpha()]


def rejected_answer(rng, sentence, people, places, firsts):
    """A plausible wrong answer: a category swap, a missing or extra entity, a cut name."""
    options = []
    if people:
        options.append("person_as_place")
    if places:
        options.append("place_as_person")
    if people or places:
        options.append("missing")
    if any(" " in p for p in people):
        options.append("first_name_only")
    extras = capitalized_non_entities(sentence, people, places)
    if extras or not options:
        options.append("extra")
    kind = rng.choice(options)
    p, l = list(people), list(places)
    if kind == "person_as_place":
        l.append(p.pop(rng.below(len(p))))
    elif kind == "place_as_person":
        p.append(l.pop(rng.below(len(l))))
    elif kind == "missing":
        k = rng.below(len(p) + len(l))
        if k < len(p):
            p.pop(k)
        else:
            l.pop(k - len(p))
    elif kind == "first_name_only":
        full = [i for i, n in enumerate(p) if " " in n]
        k = full[rng.below(len(full))]
        p[k] = p[k].split(" ")[0]
    else:
        word = rng.choice(extras or [rng.choice(firsts)])
        (p if rng.below(2) == 0 else l).append(word)
    return answer(p, l)


# More real names for the training split only (dev/test pools are unchanged). With a small pool
# the model learns the list and "corrects" an unseen test place to a train name it resembles
# (Basel -> Basil); many names make copying the span (and re-spelling it without the leading
# space it has in the sentence) the skill that pays.
EXTRA_TRAIN_PLACES = """
Aberdeen Abidjan Abuja Acapulco Adana Addis_Ababa Agra Ahmedabad Ajaccio Akron Albany Alicante
Amiens Amritsar Anchorage Annecy Antalya Arequipa Arusha Asmara Astana Augsburg Austin Avignon
Bamako Bandung Bangalore Banjul Barcelona Bari Bath Beira Belfast Belem Bergen Berlin Bern Bhopal
Bilbao Birmingham Bishkek Bonn Bratsk Bremen Brighton Brussels Bujumbura Bursa
Cadiz Cagliari Calais Cali Cambridge Canberra Cannes Cartagena Catania Cebu Chiang_Mai Chisinau
Cincinnati Cleveland Coimbra Conakry Copenhagen Cusco Dallas Damascus Danang Dar_es_Salaam Davao
Detroit Dhahran Dijon Dodoma Dortmund Dubai Duisburg Dundee Durban Dushanbe Eindhoven Erfurt
Essen Faro Fez Florence Fortaleza Frankfurt Freetown Fresno Fukuoka Funchal Galway Genoa Ghazni
Giza Goa Granada Grenoble Guadalajara Guangzhou Guayaquil Hague Haifa Halifax Hamilton Hangzhou
Hanover Harbin Heidelberg Hiroshima Honolulu Hue Hyderabad Ibadan Indore Innsbruck Inverness
Irkutsk Islamabad Jaipur Jeddah Johannesburg Juba Kabul Kampot Kano Kaunas Kazan Khartoum Kiev
Kingston Kinshasa Kobe Kochi Kumasi Kunming La_Paz Lanzhou Lausanne Leon Liege Lille Lilongwe
Limassol Linz Liverpool Lodz Lome Louisville Luxor Lviv Maastricht Madison Malaga Malta
Manchester Mandalay Mannheim Maracaibo Marrakesh Medan Medellin Melbourne Memphis Mendoza Messina
Minsk Mogadishu Monaco Monterrey Montpellier Moscow Mosul Nagoya Nanjing Nashville Nassau Nice
Niamey Nicosia Nizhny_Novgorod Novosibirsk Nuremberg Odessa Omsk Oran Orlando Ottawa Oulu Oxford
Padua Panama Paris Patna Pisa Plovdiv Portland Poznan Pretoria Pune Pyongyang Quebec Rabat
Rangoon Regensburg Rennes Rome Rosario Rostock Salzburg Samara Samarkand San_Diego Sanaa Sendai
Shenzhen Siena Stockholm Stuttgart Suva Sydney Tampa Tampere Tangier Tartu Tianjin Toledo
Toulouse Trieste Tripoli Tucson Turku Uppsala Valletta Varna Venice Verona Vientiane Vigo
Vladivostok Wroclaw Wuhan Xian Yokohama Zanzibar Zaragoza
""".split()
EXTRA_TRAIN_FIRST_NAMES = """
Adele Albert Alicia Amir Anika Anton Arjun Astrid Axel Benedikt Bruna Caio Carmen Celia
Cormac Dalia Damian Dorota Edgar Elsa Emre Enzo Eva Ezra Filip Fiona Freya Gideon Gloria Hassan
Heidi Hector Idris Ilse Isak Jasper Jelena Joaquin Josefa Kai Kamala Kasia Klara Lale Leandro
Liam Linnea Lorenzo Luca Magnus Maja Mario Maya Mehmet Miguel Mina Moritz Nadim Naomi Nathan
Nell Odile Olivia Omid Pavel Pilar Quinn Rafaela Rhea Rolf Ruben Sami Sara Sebastian Sigrid
Soren Stella Sunil Tamar Tess Theo Tobias Ulla Vadim Wendel Yasmin Yuri Zainab Zeno
""".split()
EXTRA_TRAIN_SURNAMES = """
Abbott Acosta Aguilar Bauer Becker Bergstrom Bose Brandt Carvalho Castro Coelho Dalton Delgado
Diaz Eriksen Esposito Farouk Fuentes Gallo Gomez Grant Gunther Hartmann Herrera Hoffmann Jovanovic
Kaplan Keller Klein Koch Kumar Lange Leclerc Lehmann Marx Medina Molina Moreno Nowak Olsen Pace
Peralta Quiroga Reis Rios Roth Ruiz Salazar Sandoval Schulz Serrano Shah Sokolov Stein Suarez
Torres Vargas Vega Vogel Wagner Wolf Yadav Zimmermann
""".split()


def make_split(rng, split, count):
    firsts = split_pool(FIRST_NAMES, split)
    lasts = split_pool(SURNAMES, split)
    places = split_pool(PLACES, split)
    if split == "train":
        # Only names no dev/test pool uses, and no name that is also a place or vice versa.
        others = set(FIRST_NAMES) | set(SURNAMES) | set(PLACES)
        extra_places = [p.replace("_", " ") for p in EXTRA_TRAIN_PLACES]
        extra_people = [n.replace("_", " ") for n in EXTRA_TRAIN_FIRST_NAMES]
        places = places + [p for p in extra_places if p not in others and p not in extra_people]
        firsts = firsts + [n for n in extra_people if n not in others and n not in extra_places]
        lasts = lasts + [n for n in EXTRA_TRAIN_SURNAMES if n not in others]
    templates = {"train": TRAIN_TEMPLATES, "dev": DEV_TEMPLATES, "test": TEST_TEMPLATES}[split]
    records = []
    for _ in range(count):
        sentence, people, where = make_sentence(rng, rng.choice(templates), firsts, lasts, places)
        records.append((sentence, people, where))
    return records, firsts


def user_turn(sentence):
    return INSTRUCTION + "\n\n" + sentence


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--dev", type=int, default=200)
    ap.add_argument("--test", type=int, default=200)
    args = ap.parse_args(argv)
    if min(args.train, args.dev, args.test) < 0:
        ap.error("counts must be >= 0")
    os.makedirs(args.out, exist_ok=True)
    for offset, (split, count) in enumerate(
            [("train", args.train), ("dev", args.dev), ("test", args.test)]):
        rng = SplitMix64(args.seed * 1000003 + offset)  # one stream per split
        records, firsts = make_split(rng, split, count)
        write_jsonl(os.path.join(args.out, split + ".jsonl"), [
            {"messages": [{"role": "user", "content": user_turn(s)},
                          {"role": "assistant", "content": answer(p, l)}]}
            for s, p, l in records])
        if split == "test":
            continue
        pref_rng = SplitMix64(args.seed * 1000003 + 100 + offset)
        pairs = []
        for s, p, l in records:
            chosen = answer(p, l)
            rejected = rejected_answer(pref_rng, s, p, l, firsts)
            while rejected == chosen:
                rejected = rejected_answer(pref_rng, s, p, l, firsts)
            pairs.append({"prompt": [{"role": "user", "content": user_turn(s)}],
                          "chosen": [{"role": "assistant", "content": chosen}],
                          "rejected": [{"role": "assistant", "content": rejected}]})
        write_jsonl(os.path.join(args.out, split + "_pref.jsonl"), pairs)
    print(f"wrote {args.train} train, {args.dev} dev, {args.test} test records "
          f"(+ train_pref, dev_pref) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
