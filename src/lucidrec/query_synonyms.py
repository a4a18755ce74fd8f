"""The small, editable synonym tables the query parser uses, one per language.

Each maps a phrase people type to a catalog value (matched case-insensitively against the catalog's own
categorical values). Entries whose target is not in a given catalog are ignored for it, so one table
serves any dataset; the catalog's own values and their plural / case / hyphen variants need no entry.
Add rows here, or pass ``synonyms={"en": {...}, "zh": {...}}`` to :class:`lucidrec.query.QueryParser`, or
put a ``query_synonyms.json`` with the same shape in a model folder.
"""

from __future__ import annotations

SYNONYMS: dict[str, dict[str, str]] = {
    "en": {
        # Comedy
        "funny": "Comedy",
        "comedic": "Comedy",
        "humorous": "Comedy",
        "hilarious": "Comedy",
        "lighthearted": "Comedy",
        "light-hearted": "Comedy",
        "laugh": "Comedy",
        "laughs": "Comedy",
        "romcom": "Comedy",
        # Animation
        "animated": "Animation",
        "cartoon": "Animation",
        "cartoons": "Animation",
        "anime": "Animation",
        # Children's
        "kids": "Children's",
        "kid": "Children's",
        "kid-friendly": "Children's",
        "for children": "Children's",
        "children": "Children's",
        # "family" alone is often a topic ("a drama about family"); only the film sense is a genre.
        "family film": "Children's",
        "family movie": "Children's",
        "for the family": "Children's",
        "for the whole family": "Children's",
        "family-friendly": "Children's",
        # Horror
        "scary": "Horror",
        "frightening": "Horror",
        "spooky": "Horror",
        "creepy": "Horror",
        "terrifying": "Horror",
        # Romance
        "romantic": "Romance",
        "love story": "Romance",
        "love stories": "Romance",
        # Sci-Fi
        "science fiction": "Sci-Fi",
        "scifi": "Sci-Fi",
        "sci fi": "Sci-Fi",
        "sf": "Sci-Fi",
        "space": "Sci-Fi",
        # Thriller
        "suspense": "Thriller",
        "suspenseful": "Thriller",
        "thrilling": "Thriller",
        # Crime
        "gangster": "Crime",
        "gangsters": "Crime",
        "mafia": "Crime",
        "mob": "Crime",
        "heist": "Crime",
        "criminal": "Crime",
        # Mystery
        "whodunit": "Mystery",
        "detective": "Mystery",
        "mysterious": "Mystery",
        # Drama
        "dramatic": "Drama",
        # Action / Adventure
        "action-packed": "Action",
        "adventurous": "Adventure",
        # Film-Noir
        "noir": "Film-Noir",
        # Western
        "cowboy": "Western",
        "cowboys": "Western",
        # Documentary
        "docs": "Documentary",
        "non-fiction": "Documentary",
        "nonfiction": "Documentary",
        # Musical
        "songs": "Musical",
        "singing": "Musical",
        # War
        "wartime": "War",
        "military": "War",
        # Fantasy
        "magical": "Fantasy",
        "magic": "Fantasy",
    },
    "zh": {
        "喜剧": "Comedy",
        "搞笑": "Comedy",
        "好笑": "Comedy",
        "幽默": "Comedy",
        "轻松": "Comedy",
        "动画": "Animation",
        "卡通": "Animation",
        "动漫": "Animation",
        "儿童": "Children's",
        "孩子": "Children's",
        "小孩": "Children's",
        "少儿": "Children's",
        "亲子": "Children's",
        "恐怖": "Horror",
        "吓人": "Horror",
        "鬼片": "Horror",
        "爱情": "Romance",
        "浪漫": "Romance",
        "言情": "Romance",
        "科幻": "Sci-Fi",
        "太空": "Sci-Fi",
        "惊悚": "Thriller",
        "悬念": "Thriller",
        "犯罪": "Crime",
        "黑帮": "Crime",
        "警匪": "Crime",
        "悬疑": "Mystery",
        "推理": "Mystery",
        "侦探": "Mystery",
        "剧情": "Drama",
        "动作": "Action",
        "冒险": "Adventure",
        "黑色电影": "Film-Noir",
        "西部": "Western",
        "牛仔": "Western",
        "纪录": "Documentary",
        "纪录片": "Documentary",
        "歌舞": "Musical",
        "音乐剧": "Musical",
        "战争": "War",
        "奇幻": "Fantasy",
        "魔幻": "Fantasy",
        "魔法": "Fantasy",
    },
}
